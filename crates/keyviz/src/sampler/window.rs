//! The open window and the side buffer: every observation is filed in the step
//! window of its own timestamp.
//!
//! The sampler has one *open window* (`open`, an atomic window start). An
//! observation stamped inside it takes the fast path: the slot's lock-free
//! counters, which [`seal`](super::Sampler::seal) drains into that window's
//! column. Any other timestamp — older (a late or replayed write, a lagging
//! follower's apply) or newer (observed after a step boundary, before the seal
//! ran) — goes to the slow path here: a mutex-protected buffer keyed by window,
//! sealed once its window has closed.
//!
//! Bounds (each fold is counted in [`SamplerStats`](crate::SamplerStats), no
//! count is ever dropped):
//! - at most [`MAX_SIDE_WINDOWS`] windows and [`MAX_SIDE_CELLS`] cells (one cell
//!   = one slot sub-range in one window). Past a cap an observation is counted in
//!   the nearest window (by time) that can take it without growing the buffer:
//!   a buffered window that already holds its cell, or the open window.
//! - a window older than retention (relative to the open window when observed,
//!   and again relative to the new open window at seal) is counted in the
//!   oldest window retention keeps, so no late count is pruned on arrival.
//! - at seal, a buffered window more than [`MAX_FUTURE_STEPS`] steps after the
//!   new open window (a proposer's clock far ahead of ours) is counted in the
//!   new open window.
//! - per cell, at most four (group, term) write identities, as in a live slot;
//!   further identities join the identity-less lane.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::counters::MAX_SHARDS;
use super::counters::{UNKNOWN_LANE, WRITE_LANES};
use super::route_table::Slot;
use super::shard::NO_SHARD;
use crate::history::{Lanes, WriteLane};
use crate::sync::{Arc, AtomicI64, AtomicU64, Ordering};
use crate::time::align_down;

/// Windows the side buffer holds at most.
pub const MAX_SIDE_WINDOWS: usize = 256;
/// Cells (slot sub-range × window) the side buffer holds at most.
pub const MAX_SIDE_CELLS: usize = 16_384;
/// Steps after the open window a buffered window may start and still be kept.
pub const MAX_FUTURE_STEPS: i64 = 2;

/// What one observation counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Read { leader: bool },
    Write { group: u64, term: u64 },
}

/// One sub-range of one slot in one buffered window.
#[derive(Debug)]
pub(crate) struct SideCell {
    pub(crate) slot: Arc<Slot>,
    pub(crate) sub: u32,
    pub(crate) reads_leader: u64,
    pub(crate) reads_follower: u64,
    pub(crate) read_bytes: u64,
    /// `WRITE_LANES` identified lanes (free while all-zero), then the identity-less one.
    lanes: [WriteLane; WRITE_LANES + 1],
}

impl SideCell {
    fn new(slot: &Arc<Slot>, sub: u32) -> SideCell {
        SideCell {
            slot: Arc::clone(slot),
            sub,
            reads_leader: 0,
            reads_follower: 0,
            read_bytes: 0,
            lanes: [WriteLane::default(); WRITE_LANES + 1],
        }
    }

    fn add(&mut self, op: Op, count: u64, bytes: u64) {
        match op {
            Op::Read { leader } => {
                if leader {
                    self.reads_leader = self.reads_leader.saturating_add(count);
                } else {
                    self.reads_follower = self.reads_follower.saturating_add(count);
                }
                self.read_bytes = self.read_bytes.saturating_add(bytes);
            }
            Op::Write { group, term } => {
                let lane = self.lane_for(group, term);
                let l = &mut self.lanes[lane];
                l.writes = l.writes.saturating_add(count);
                l.write_bytes = l.write_bytes.saturating_add(bytes);
            }
        }
    }

    /// The live slot's lane rule: identity-less writes and a fifth identity
    /// go to the identity-less lane.
    fn lane_for(&mut self, group: u64, term: u64) -> usize {
        if group == 0 || term == 0 {
            return UNKNOWN_LANE;
        }
        if let Some(i) = self.lanes[..WRITE_LANES]
            .iter()
            .position(|l| l.group == group && l.term == term)
        {
            return i;
        }
        match self.lanes[..WRITE_LANES].iter().position(|l| l.group == 0) {
            Some(i) => {
                self.lanes[i].group = group;
                self.lanes[i].term = term;
                i
            }
            None => UNKNOWN_LANE,
        }
    }

    fn absorb(&mut self, other: &SideCell) {
        self.reads_leader = self.reads_leader.saturating_add(other.reads_leader);
        self.reads_follower = self.reads_follower.saturating_add(other.reads_follower);
        self.read_bytes = self.read_bytes.saturating_add(other.read_bytes);
        for l in other.lanes.iter() {
            if l.writes == 0 && l.write_bytes == 0 {
                continue;
            }
            let lane = self.lane_for(l.group, l.term);
            let dst = &mut self.lanes[lane];
            dst.writes = dst.writes.saturating_add(l.writes);
            dst.write_bytes = dst.write_bytes.saturating_add(l.write_bytes);
        }
    }

    /// Operations (reads plus writes) in the cell.
    pub(crate) fn operations(&self) -> u64 {
        self.lanes.iter().fold(
            self.reads_leader.saturating_add(self.reads_follower),
            |a, l| a.saturating_add(l.writes),
        )
    }

    /// The non-empty write lanes in the column format.
    pub(crate) fn lanes(&self) -> Lanes {
        self.lanes
            .iter()
            .filter(|l| l.writes != 0 || l.write_bytes != 0)
            .copied()
            .collect()
    }
}

type CellKey = (u64, u32);

/// A statistic on its own cache line (no false sharing between lease holders).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct PaddedU64(pub(crate) AtomicU64);

#[derive(Debug, Default)]
struct SideBuffer {
    windows: BTreeMap<i64, FxHashMap<CellKey, SideCell>>,
    cells: usize,
}

/// Where a slow-path observation goes.
enum Target {
    /// A buffered window (`true` when it is not the observation's own: folded).
    Side(i64, bool),
    /// The open window's live counters (always folded).
    Open,
}

impl SideBuffer {
    fn target(&self, w: i64, key: CellKey, open: i64) -> Target {
        let cell_room = self.cells < MAX_SIDE_CELLS;
        match self.windows.get(&w) {
            Some(cells) if cells.contains_key(&key) || cell_room => return Target::Side(w, false),
            None if cell_room && self.windows.len() < MAX_SIDE_WINDOWS => {
                return Target::Side(w, false);
            }
            _ => {}
        }
        // Past a cap: the nearest window that takes it without growing past one.
        let best = self
            .windows
            .iter()
            .filter(|(_, cells)| cell_room || cells.contains_key(&key))
            .map(|(&c, _)| c)
            .min_by_key(|&c| c.abs_diff(w));
        match best {
            Some(c) if c.abs_diff(w) < open.abs_diff(w) => Target::Side(c, true),
            _ => Target::Open,
        }
    }

    fn add(&mut self, w: i64, slot: &Arc<Slot>, sub: u32, op: Op, bytes: u64) {
        let window = self.windows.entry(w).or_default();
        let cell = window.entry((slot.generation, sub)).or_insert_with(|| {
            self.cells += 1;
            SideCell::new(slot, sub)
        });
        cell.add(op, 1, bytes);
    }

    fn merge_into(&mut self, w: i64, cells: FxHashMap<CellKey, SideCell>) {
        let window = self.windows.entry(w).or_default();
        for (key, cell) in cells {
            match window.get_mut(&key) {
                Some(dst) => {
                    dst.absorb(&cell);
                    self.cells = self.cells.saturating_sub(1);
                }
                None => {
                    window.insert(key, cell);
                }
            }
        }
    }
}

/// The window state shared by the sampler and its [`Recorder`](crate::Recorder)s.
///
/// `repr(C)`: the three fields every observe reads come first, on one line.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Windows {
    /// Start of the open window.
    open: AtomicI64,
    step_ms: u64,
    /// `capture.on`, next to `open` and `step_ms`: the observe path reads
    /// one line of this struct, not the capture settings' too.
    pub(crate) capture_on: bool,
    retention_ms: i64,
    side: crate::sync::Mutex<SideBuffer>,
    /// Observations of unregistered routes without a shard lease.
    unknown_route: AtomicU64,
    /// ... and per lease index (load + store by the lease holder, no atomic
    /// read-modify-write: the miss path costs what Go's does, or less).
    /// Shared with every route table of the sampler, so the fast path
    /// counts an unknown route through the table it already holds.
    unknown_sharded: UnknownCounts,
    pub(crate) out_of_window: AtomicU64,
    pub(crate) folded: AtomicU64,
    pub(crate) aged: AtomicU64,
    pub(crate) clock_ahead: AtomicU64,
    /// Hot-key capture settings and budget, shared with every recorder.
    pub(crate) capture: std::sync::Arc<super::capture::Capture>,
}

/// The per-lease counts of observations of unregistered routes, shared by
/// [`Windows`] and the route tables ([`RouteTable::note_unknown`](super::route_table::RouteTable::note_unknown)).
pub(crate) type UnknownCounts = std::sync::Arc<[PaddedU64; MAX_SHARDS]>;

/// Windows closed by a seal, oldest first, with their buffered cells.
pub(crate) type Closed = Vec<(i64, Vec<SideCell>)>;

impl Windows {
    pub(crate) fn new(
        now_unix_ms: i64,
        step_ms: u64,
        retention_ms: u64,
        capture: super::capture::Capture,
    ) -> Windows {
        Windows {
            open: AtomicI64::new(align_down(now_unix_ms, step_ms)),
            step_ms,
            capture_on: capture.on,
            retention_ms: i64::try_from(retention_ms).unwrap_or(i64::MAX),
            side: crate::sync::Mutex::default(),
            unknown_route: AtomicU64::new(0),
            unknown_sharded: std::sync::Arc::new(std::array::from_fn(|_| PaddedU64::default())),
            out_of_window: AtomicU64::new(0),
            folded: AtomicU64::new(0),
            aged: AtomicU64::new(0),
            clock_ahead: AtomicU64::new(0),
            capture: std::sync::Arc::new(capture),
        }
    }

    /// Counts one observation of an unregistered route, as lease `shard`.
    #[inline(always)]
    pub(crate) fn note_unknown(&self, shard: usize) {
        match self.unknown_sharded.get(shard) {
            // Ordering: Relaxed — a statistic, written by the lease holder only.
            Some(c) => c.0.store(
                c.0.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            ),
            None => {
                self.unknown_route.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The per-lease unknown-route counts, for a route table to share.
    pub(crate) fn unknown_counts(&self) -> UnknownCounts {
        std::sync::Arc::clone(&self.unknown_sharded)
    }

    /// Observations of unregistered routes so far.
    pub(crate) fn unknown_routes(&self) -> u64 {
        // Ordering: Relaxed — statistics.
        self.unknown_sharded
            .iter()
            .fold(self.unknown_route.load(Ordering::Relaxed), |a, c| {
                a.wrapping_add(c.0.load(Ordering::Relaxed))
            })
    }

    /// True when `at_unix_ms` falls in the open window: one relaxed load, one
    /// subtraction, one compare (exact while `open + step` does not overflow,
    /// which aligned real times never do).
    #[inline(always)]
    pub(crate) fn is_open(&self, at_unix_ms: i64) -> bool {
        // Ordering: Relaxed — an observation racing a seal's advance may be
        // filed in the window being sealed or the next one (the drain race of
        // the counters themselves); either way it is counted exactly once.
        let open = self.open.load(Ordering::Relaxed);
        (at_unix_ms.wrapping_sub(open) as u64) < self.step_ms
    }

    /// Start of the open window.
    pub(crate) fn open(&self) -> i64 {
        // Ordering: Relaxed — see `is_open`.
        self.open.load(Ordering::Relaxed)
    }

    /// The oldest window retention keeps when `open` is the newest.
    fn oldest_kept(&self, open: i64) -> i64 {
        align_down(open.saturating_sub(self.retention_ms), self.step_ms)
            .saturating_add(self.step_ms as i64)
            .min(open)
    }

    /// Counts one observation in the open window's live counters (a folded
    /// one: not captured for hot keys, its summary's bounds widen instead).
    fn count_open(slot: &Slot, sub: usize, bytes: u64, op: Op) {
        match op {
            // The shared counters: the slow path holds no lease.
            Op::Read { leader } => slot.counters.add_read(NO_SHARD, sub, leader, bytes, false),
            Op::Write { group, term } => slot.counters.add_write(
                NO_SHARD,
                sub,
                slot.lanes.lane_for(group, term),
                bytes,
                false,
            ),
        };
    }

    /// The slow path: an observation stamped outside the open window.
    #[cold]
    #[inline(never)]
    pub(crate) fn record(&self, slot: &Arc<Slot>, sub: usize, bytes: u64, op: Op, at: i64) {
        // Ordering: Relaxed — statistics.
        self.out_of_window.fetch_add(1, Ordering::Relaxed);
        let open = self.open();
        let mut w = align_down(at, self.step_ms);
        let oldest = self.oldest_kept(open);
        if w < oldest {
            w = oldest;
            self.aged.fetch_add(1, Ordering::Relaxed);
        }
        if w == open {
            Self::count_open(slot, sub, bytes, op);
            return;
        }
        let sub32 = u32::try_from(sub).unwrap_or(u32::MAX);
        let mut side = self.side.lock();
        match side.target(w, (slot.generation, sub32), open) {
            Target::Side(t, folded) => {
                if folded {
                    self.folded.fetch_add(1, Ordering::Relaxed);
                }
                side.add(t, slot, sub32, op, bytes);
            }
            Target::Open => {
                drop(side);
                self.folded.fetch_add(1, Ordering::Relaxed);
                Self::count_open(slot, sub, bytes, op);
            }
        }
    }

    /// Makes `new_open` the open window; returns the window that was open.
    /// Caller holds the seal lock.
    pub(crate) fn advance(&self, new_open: i64) -> i64 {
        // Ordering: Relaxed — see `is_open`; the counters' own drain race bounds
        // what an observer that read the old window can do.
        self.open.swap(new_open, Ordering::Relaxed)
    }

    /// Takes every buffered window (with windows older than retention moved to
    /// the oldest kept one, and windows too far ahead of `new_open` moved into
    /// it). Windows at or after `new_open` are taken too, as partial columns that
    /// later seals complete (publish merges by window): a seal then covers every
    /// observation made before it, which a host that records what a flush covered
    /// (kvnode's log watermarks) relies on. Takes the side-buffer lock only.
    pub(crate) fn take_buffered(&self, new_open: i64) -> Closed {
        let mut side = self.side.lock();
        // Far-future windows: the proposer's clock is ahead of ours.
        let limit = new_open.saturating_add((self.step_ms as i64).saturating_mul(MAX_FUTURE_STEPS));
        let ahead = side.windows.split_off(&limit.saturating_add(1));
        for (_, cells) in ahead {
            let ops: u64 = cells.values().map(SideCell::operations).sum();
            // Ordering: Relaxed — statistics.
            self.clock_ahead.fetch_add(ops, Ordering::Relaxed);
            side.merge_into(new_open, cells);
        }
        let closed = std::mem::take(&mut side.windows);
        let oldest = self.oldest_kept(new_open);
        let mut out: BTreeMap<i64, FxHashMap<CellKey, SideCell>> = BTreeMap::new();
        for (w, cells) in closed {
            side.cells = side.cells.saturating_sub(cells.len());
            // Retention moved on while the window waited (the observation was
            // counted in `aged` if it was already too old when observed).
            let w = w.max(oldest);
            let dst = out.entry(w).or_default();
            for (key, cell) in cells {
                match dst.get_mut(&key) {
                    Some(d) => d.absorb(&cell),
                    None => {
                        dst.insert(key, cell);
                    }
                }
            }
        }
        drop(side);
        out.into_iter()
            .map(|(w, cells)| (w, cells.into_values().collect()))
            .collect()
    }

    /// (buffered windows, buffered cells).
    pub(crate) fn pending(&self) -> (usize, usize) {
        let side = self.side.lock();
        (side.windows.len(), side.cells)
    }
}
