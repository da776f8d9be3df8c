//! The counters one observation touches, and how flush drains them.
//!
//! Two tiers per slot:
//!
//! - **Shared counters**, always there: each packs an operation count (high
//!   24 bits) and a byte count (low 40 bits) into one `AtomicU64`, so an
//!   observation is a single relaxed `fetch_add`. Before a field can overflow,
//!   the observer that sees it past half full moves the packed value into a
//!   wide per-slot overflow block. Flush drains them with `swap(0)`, so an
//!   increment lands either before the swap (this column) or after it (the
//!   next column) — never lost, never counted twice. All counters of one
//!   sub-range share one 64-byte line.
//! - **Thread shards**, for busy slots: a thread holding a shard lease
//!   ([`super::shard`]) whose shared counter shows [`PROMOTE_AT`] operations in
//!   the window gets a [`ShardBlock`] of its own in that slot (one allocation,
//!   once per slot and lease, within a process-wide byte budget). From then on
//!   its observations of the slot are a relaxed *load and store* of two
//!   cumulative `u64`s that only it writes: no locked instruction, no shared
//!   cache line. Flush never writes them: it loads each cumulative value and
//!   counts the difference to the value it saw last time (kept in the block,
//!   written by the seal side only). Per-location coherence makes every
//!   increment appear in exactly one difference, and the `u64`s cannot
//!   overflow in practice (an operation adds at most [`MAX_OP_BYTES`] bytes).
//!   The hot-key capture decision is cached in the same line: the count at
//!   which the next capture is due ([`capture_next`]), so a shard observe
//!   compares one number and computes a stride only when one is due.
//!
//! Increments are `Relaxed`: each counter is an independent tally and nothing
//! is published through it.

use std::sync::{Arc, OnceLock};

use super::shard::ShardIx;
use crate::sync::{AtomicU64, Ordering, fence};

/// Write lanes with an identity per slot. A leadership flip inside one window
/// uses a second lane; four cover any realistic churn, and a fifth pseudo-lane
/// counts writes whose identity is unknown or did not fit.
pub(crate) const WRITE_LANES: usize = 4;
/// Index of the lane for writes without a (group, term) identity.
pub(crate) const UNKNOWN_LANE: usize = WRITE_LANES;
/// Packed counters per sub-range: leader reads, follower reads, 5 write lanes.
const COUNTERS: usize = 2 + WRITE_LANES + 1;
const READ_LEADER: usize = 0;
const READ_FOLLOWER: usize = 1;
const FIRST_WRITE: usize = 2;

/// [`ShardBlock::count`]: counted.
pub(crate) const COUNTED: u8 = 0;
/// [`ShardBlock::count`]: counted, and a hot-key capture is due.
pub(crate) const DUE: u8 = 1;
/// [`ShardBlock::count`]: nothing counted (no such sub-range; for the fast
/// path: the lease has no block in the slot).
pub(crate) const NO_BLOCK: u8 = 2;

/// The counter of a leader (`true`) or follower read.
#[inline(always)]
pub(crate) fn read_counter(leader: bool) -> usize {
    if leader { READ_LEADER } else { READ_FOLLOWER }
}

/// The counter of write lane `lane` ([`UNKNOWN_LANE`] included).
#[inline(always)]
pub(crate) fn write_counter(lane: usize) -> usize {
    FIRST_WRITE + lane.min(UNKNOWN_LANE)
}

/// A sub-range's counter as a type that holds only `0..COUNTERS`, so the
/// fast path indexes a shard's cells with it and no bounds check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Counter {
    /// Leader reads ([`read_counter`]`(true)`).
    ReadLeader = 0,
    /// Follower reads.
    ReadFollower,
    /// Write lane 0 ([`write_counter`]`(0)`).
    Lane0,
    /// Write lane 1.
    Lane1,
    /// Write lane 2.
    Lane2,
    /// Write lane 3.
    Lane3,
    /// Writes without a lane ([`UNKNOWN_LANE`]).
    Unknown,
}

const _: () = assert!(
    COUNTERS == 7 && READ_LEADER == 0 && READ_FOLLOWER == 1 && FIRST_WRITE == 2,
    "Counter has one variant per counter, in counter order"
);

impl Counter {
    /// [`read_counter`] as a `Counter`.
    #[inline(always)]
    pub(crate) fn read(leader: bool) -> Counter {
        if leader {
            Counter::ReadLeader
        } else {
            Counter::ReadFollower
        }
    }

    /// [`write_counter`] as a `Counter` (a lane past the last is
    /// [`UNKNOWN_LANE`]'s, as there).
    #[inline(always)]
    pub(crate) fn write(lane: usize) -> Counter {
        match lane {
            0 => Counter::Lane0,
            1 => Counter::Lane1,
            2 => Counter::Lane2,
            3 => Counter::Lane3,
            _ => Counter::Unknown,
        }
    }

    /// The counter index, below the counter count.
    #[inline(always)]
    pub(crate) fn get(self) -> usize {
        self as usize
    }
}

/// Lane key value meaning "free".
const FREE: u64 = 0;
/// Lane key value meaning "being claimed" (group not yet published).
const CLAIMING: u64 = u64::MAX;

const COUNT_SHIFT: u32 = 40;
const BYTES_MASK: u64 = (1 << COUNT_SHIFT) - 1;
/// Spill when the count field (24 bits) is half full ...
const SPILL_COUNT: u64 = 1 << 23;
/// ... or the byte field (40 bits) is half full.
const SPILL_BYTES: u64 = 1 << 39;
/// A single observation this large bypasses the packed field altogether.
const MAX_PACKED_ADD: u64 = 1 << 32;
/// Bytes one observation counts at most: no key and value are larger than
/// memory, and the cap keeps a window's byte total far from `u64` wrap.
pub(crate) const MAX_OP_BYTES: u64 = 1 << 48;
/// Operations a shared counter shows in a window before a thread with a
/// shard lease moves to a shard of its own in that slot (checked every
/// [`PROMOTE_EVERY`] operations from there on, so every busy thread moves).
pub(crate) const PROMOTE_AT: u64 = 256;
const PROMOTE_EVERY: u64 = 64;
/// Thread shards one slot can hold (one per shard lease index).
pub(crate) const MAX_SHARDS: usize = 8;
/// Heap bytes all shard blocks of the process may take together; past it a
/// busy slot stays on its shared counters (still exact, one atomic add).
/// 40 MiB: a one-sub-range block is 512 bytes (its lane copy's line, the
/// first sub-range and the `Arc` counts), so 10 000 busy routes on all 8
/// lease indices (80 000 blocks) fit.
pub(crate) const SHARD_BUDGET_BYTES: usize = 40 << 20;
/// Shard block bytes allocated now, process-wide.
static SHARD_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A drained window this busy makes flush provision the overflow block.
const PROVISION_COUNT: u64 = 1 << 18;
const PROVISION_BYTES: u64 = 1 << 34;

/// `log2` of half the operations per counter and window that are all
/// captured in a *hot* row: with 9, the first 1 024 operations of a counter in
/// a window are, then 512 per doubling of the count. 512 captures per
/// doubling keep the estimate of a key with a 10 % share within about 7 %
/// (one sigma) however busy the row; 32 per doubling measured a 28 % miss
/// (see `docs/PERFORMANCE.md`).
pub(crate) const EXACT_CAPTURE_SHIFT: u32 = 9;

/// A sub-range whose previous window counted at least this many operations
/// (all series) is *hot*: its counters capture every one of their first
/// 1 024 operations of the window. Any other sub-range is *quiet*.
pub(crate) const HOT_ROW_OPS: u64 = 4_096;

/// Operations per counter and window a quiet row captures exactly.
pub(crate) const QUIET_EXACT: u64 = 32;

/// `log2` of a quiet row's sampling stride past [`QUIET_EXACT`]: one capture
/// per aligned block of 64 operations, until the hot-row stride is larger.
pub(crate) const QUIET_STRIDE_SHIFT: u32 = 6;

/// Whether the operation that found `count` earlier operations on its counter
/// in this window is captured for hot keys, and with what weight; `hot` says
/// whether the row was hot in its previous window ([`HOT_ROW_OPS`]).
///
/// Returns 0 (not captured) or the stride `s`: the captured operation stands
/// for `s` operations. Hot row: while `count < 1024`, `s = 1` (every
/// operation); from there, in each range `[512·2^j, 512·2^(j+1))` (`j >= 1`),
/// `s = 2^j`. Quiet row (the escalation scheme: a quiet row costs little, a
/// row that proves busy gets the full capture from its next window on):
/// `s = 1` for the first [`QUIET_EXACT`] operations, one block of 32 up to
/// 64, then `s = max(64, the hot-row stride)`. Either way the operations are
/// cut into aligned blocks of `s` and exactly one operation of each block is
/// captured, at a position picked by hashing the block number. The blocks
/// tile the count exactly, so the captured weight of a counter equals its
/// count up to the last, partly filled block; any stride above 1 marks the
/// summary `sampled` and widens its bounds. The position is hashed rather
/// than fixed so that periodic traffic (a client cycling through ten keys)
/// does not alias with the stride; it is still a pure function of the count
/// and of the previous window's count, so two nodes fed the same traffic
/// capture the same operations. Decided on the count the counter already
/// paid for, so the path reads no extra memory but the row's hot flag.
#[inline(always)]
pub(crate) fn capture_stride(count: u64, hot: bool) -> u64 {
    let j = stride_shift(count, hot);
    if j == 0 {
        return 1;
    }
    let s = 1u64 << j;
    if count & (s - 1) == block_phase(count, j) {
        s
    } else {
        0
    }
}

/// `log2` of the capture stride in force at `count` (0: every operation is
/// captured). Constant over each aligned block of `2^shift` counts: the
/// ranges it changes at are powers of two no smaller than the block.
#[inline(always)]
fn stride_shift(count: u64, hot: bool) -> u32 {
    let q = count >> EXACT_CAPTURE_SHIFT;
    let j = if q < 2 { 0 } else { 63 - q.leading_zeros() };
    if hot {
        j
    } else if count < QUIET_EXACT {
        0
    } else if count < 2 * QUIET_EXACT {
        QUIET_EXACT.trailing_zeros()
    } else {
        j.max(QUIET_STRIDE_SHIFT)
    }
}

/// The offset of the captured operation in the block of `2^j` counts holding
/// `count` (`j > 0`): Fibonacci hashing of the block number, whose high bits
/// pick the phase.
#[inline(always)]
fn block_phase(count: u64, j: u32) -> u64 {
    ((count >> j).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) & ((1u64 << j) - 1)
}

/// The smallest count after `count` whose operation [`capture_stride`]
/// captures (`u64::MAX` if none fits): where a thread shard's next capture is
/// due, so its observe path compares one number instead of computing the
/// stride per operation. Exact: the same captures as calling
/// `capture_stride` on every count.
pub(crate) fn capture_next(count: u64, hot: bool) -> u64 {
    let mut c = count.saturating_add(1);
    // The block after `c`'s starts at a power-of-two boundary if the stride
    // changes there, aligned to the new block: two rounds always suffice.
    for _ in 0..3 {
        let j = stride_shift(c, hot);
        if j == 0 {
            return c;
        }
        let s = 1u64 << j;
        let start = c & !(s - 1);
        let pos = start | block_phase(c, j);
        if pos >= c {
            return pos;
        }
        let Some(after) = start.checked_add(s) else {
            return u64::MAX;
        };
        c = after;
    }
    c
}

/// Packed counters of one sub-range, on their own 64-byte line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct SubCounters {
    packed: [AtomicU64; COUNTERS],
    /// 1 when the previous drain took at least [`HOT_ROW_OPS`] operations
    /// (written by the seal side, read by captures).
    hot: AtomicU64,
}

impl SubCounters {
    #[inline(always)]
    fn is_hot(&self) -> bool {
        // Ordering: Relaxed — a capture heuristic; a stale flag shifts the
        // escalation by one window.
        self.hot.load(Ordering::Relaxed) != 0
    }
}

/// Wide overflow counters of one sub-range: (count, bytes) per packed counter.
#[derive(Debug, Default)]
struct Wide {
    counts: [AtomicU64; COUNTERS],
    bytes: [AtomicU64; COUNTERS],
}

/// One counter of one sub-range in a thread shard: cumulative operations and
/// bytes, written (load + store) by the shard's lease holder only, and the
/// cumulative operation count at which the next hot-key capture is due
/// (`next`; `u64::MAX` with capture off). The observe path reads and writes
/// this one line and nothing else of the shard: what the seal side last took
/// (`seen`) and the row's hot flag live in [`ShardSeen`], read only when a
/// capture is due.
///
/// `next` has two writers, which is safe because it decides only *which*
/// operations are offered to the capture, never a count: the lease holder
/// (after a due operation, [`ShardBlock::capture_due`]) and the seal side
/// (when it takes the cell's growth it sets `next` to the new `seen`, so the
/// new window's first operation is due). A lost update between the two only
/// moves capture positions of the window's first stride; the summary counts
/// every uncaptured operation in its bounds (`CaptureSketch::summary` takes
/// the exact total), so no bound lies.
#[derive(Debug, Default)]
#[repr(align(32))]
struct ShardCell {
    ops: AtomicU64,
    bytes: AtomicU64,
    next: AtomicU64,
}

/// A thread shard's counters for one sub-range: one 32-byte cell per counter
/// (the lease holder's lines), then the seal side's state on lines of its
/// own. 384 bytes.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct ShardSub {
    cells: [ShardCell; COUNTERS],
    /// In a block's first sub-range, the block's other sub-ranges (empty
    /// everywhere else): set at creation, read-only after, in the padding
    /// before `seen`, so a one-sub-range block is 384 bytes, not 448.
    more: Box<[ShardSub]>,
    seen: ShardSeen,
}

/// The seal side's state of one sub-range of a thread shard: the cumulative
/// values the last drain took (written under the seal lock only) and the
/// shard's copy of the row's hot flag (see [`SubCounters`]). Read by the
/// lease holder only when a capture is due.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct ShardSeen {
    hot: AtomicU64,
    ops: [AtomicU64; COUNTERS],
    bytes: [AtomicU64; COUNTERS],
    /// Hot-key capture on (the sampler's setting when the block was made):
    /// whether the seal side resets the cells' `next`.
    capture: bool,
}

/// One lease holder's counters in one slot: the first sub-range inline (a
/// slot of one sub-range, the common case, reaches its cells with no length
/// check and no second pointer), the others boxed in its `more`. In an `Arc`
/// in the slot's per-lease `OnceLock` (an unpromoted lease costs the slot 16
/// bytes), shared with the route tables' per-lease arrays
/// ([`RouteTable::lease_block`](super::route_table::RouteTable::lease_block)),
/// through which the fast path reaches it without reading the slot.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct ShardBlock {
    /// The lease holder's copy of the slot's write lane identities, so a
    /// write finds its lane without reading the slot (see [`LaneDir`]).
    lanes: LaneDir,
    /// Sub-range 0; its `more` holds sub-ranges 1.. .
    first: ShardSub,
}

/// A lease holder's copy of some of its slot's write lanes: entry `i` is
/// empty (term [`FREE`]) or names lane `i`'s identity (term, group) as the
/// slot's [`WriteLanes`] had it when the holder last counted a write there.
/// One line, read by the fast path of every write next to the cell it bumps
/// (both lines hang off the same block pointer, so they load in parallel).
///
/// Writers: the lease holder stores an identity
/// ([`ShardBlock::remember_lane`], on the general path, right after the
/// slot's lanes gave it that lane), and re-reads the slot's lane after a
/// `SeqCst` fence, emptying the entry if the lane changed meanwhile; the seal
/// side empties the entry of every lane idle in a drain
/// ([`SlotCounters::forget_idle_lanes`], after the lane ageing that may free
/// it, and after a `SeqCst` fence). A lane is freed only when idle, so when a
/// seal has freed lane `i`, every entry `i` is empty or re-checked against
/// the freed lane: the two fences order the holder's store before the seal's
/// empty store, or its re-read after the free. What remains is the race the
/// slot's own lanes have (an observer that matched a lane the seal frees
/// before its count lands, see [`WriteLanes`]): a fast-path write that reads
/// the entry before it sees the seal's empty store.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct LaneDir {
    ids: [LaneId; WRITE_LANES],
}

impl ShardBlock {
    /// Heap bytes of a block of `subs` sub-ranges, as the budget counts them:
    /// the block (lane copy and sub-range 0), the other sub-ranges, and the
    /// `Arc`'s two counts, padded to the block's alignment.
    fn bytes(subs: usize) -> usize {
        std::mem::size_of::<ShardBlock>()
            + (subs.max(1) - 1) * std::mem::size_of::<ShardSub>()
            + std::mem::align_of::<ShardBlock>()
    }

    /// The write counter of (group, term) by the lease holder's copy of the
    /// slot's lanes ([`LaneDir`]): the unknown lane's for a write without
    /// identity (as [`WriteLanes::find`]), `None` when the copy has no lane
    /// of that identity (the general path finds or claims one in the slot
    /// and remembers it here). Reads one line of the block.
    #[inline(always)]
    pub(crate) fn lane(&self, group: u64, term: u64) -> Option<Counter> {
        if group == 0 || term == 0 || term == CLAIMING {
            return Some(Counter::Unknown);
        }
        for (i, id) in self.lanes.ids.iter().enumerate() {
            // Ordering: Relaxed — only this thread (the lease holder) stores a
            // non-empty entry, so term and group read here are its own stores;
            // the seal only empties the term (see `LaneDir`).
            if id.term.load(Ordering::Relaxed) == term && id.group.load(Ordering::Relaxed) == group
            {
                return Some(Counter::write(i));
            }
        }
        None
    }

    /// Lease holder, on the general path, right after `lanes` (the slot's)
    /// gave it `lane` for (group, term): remembers that in its copy, so its
    /// next write of that identity takes the fast path. Nothing for the
    /// unknown lane, or when the copy already says so. Never blocks.
    #[inline(always)]
    pub(crate) fn remember_lane(&self, lane: usize, group: u64, term: u64, lanes: &WriteLanes) {
        let Some(id) = self.lanes.ids.get(lane) else {
            return;
        };
        // Ordering: Relaxed — our own stores (see `LaneDir`).
        if id.term.load(Ordering::Relaxed) == term && id.group.load(Ordering::Relaxed) == group {
            return;
        }
        self.store_lane(id, lane, group, term, lanes);
    }

    /// [`remember_lane`](Self::remember_lane)'s store and re-check; out of
    /// line, once per block and identity.
    #[cold]
    #[inline(never)]
    fn store_lane(&self, id: &LaneId, lane: usize, group: u64, term: u64, lanes: &WriteLanes) {
        if term == FREE || term == CLAIMING {
            return;
        }
        // Ordering: Relaxed stores, group first: the only reader of a
        // non-empty entry is this thread (see `LaneDir`).
        id.group.store(group, Ordering::Relaxed);
        id.term.store(term, Ordering::Relaxed);
        // Ordering: SeqCst fence, paired with the one in `forget_idle_lanes`:
        // either the seal's empty store comes after ours, or our re-read
        // below sees the seal's free of the lane (see `LaneDir`).
        fence(Ordering::SeqCst);
        if lanes.identity(lane) != (group, term) {
            id.term.store(FREE, Ordering::Relaxed);
        }
    }

    /// One operation of `bytes` (at most [`MAX_OP_BYTES`]) on `counter` of
    /// sub-range 0, by the lease holder: [`COUNTED`] or [`DUE`] (a capture
    /// is due: [`SlotCounters::due_stride`] tells its stride). No call, no
    /// locked instruction.
    #[inline(always)]
    pub(crate) fn count_first(&self, counter: Counter, bytes: u64) -> u8 {
        count_cell(&self.first, counter, bytes)
    }

    /// [`count_first`](Self::count_first) on sub-range `sub`; [`NO_BLOCK`]
    /// (nothing counted) past the block's sub-ranges.
    #[inline(always)]
    pub(crate) fn count(&self, sub: usize, counter: Counter, bytes: u64) -> u8 {
        match self.sub(sub) {
            Some(s) => count_cell(s, counter, bytes),
            None => NO_BLOCK,
        }
    }

    fn new(subs: usize, capture: bool) -> ShardBlock {
        let sub = || {
            let first = if capture { 0 } else { u64::MAX };
            let mut s = ShardSub::default();
            s.seen.capture = capture;
            for cell in &s.cells {
                // Ordering: Relaxed — published with the block (OnceLock).
                cell.next.store(first, Ordering::Relaxed);
            }
            s
        };
        let mut first = sub();
        first.more = (1..subs).map(|_| sub()).collect();
        ShardBlock {
            lanes: LaneDir::default(),
            first,
        }
    }

    /// Sub-range `sub`'s counters (`None` past the slot's sub-ranges).
    #[inline(always)]
    fn sub(&self, sub: usize) -> Option<&ShardSub> {
        match sub.checked_sub(1) {
            None => Some(&self.first),
            Some(i) => self.first.more.get(i),
        }
    }

    /// Lease holder, after counting an operation whose cumulative count
    /// before it was `ops` and found it at or past the cell's `next`: the
    /// operation's capture stride ([`capture_stride`] of its count in the
    /// window; 0 = not captured), and the cell's next due count.
    /// Out of line: due once per capture.
    #[cold]
    #[inline(never)]
    fn capture_due(&self, sub: usize, counter: usize, ops: u64) -> u64 {
        let Some(s) = self.sub(sub) else {
            return 0;
        };
        let (cell, seen) = (&s.cells[counter], &s.seen);
        if !seen.capture {
            // Ordering: Relaxed — see `ShardCell`.
            cell.next.store(u64::MAX, Ordering::Relaxed);
            return 0;
        }
        // Ordering: Relaxed — a capture heuristic (see `ShardCell`).
        let base = seen.ops[counter].load(Ordering::Relaxed);
        if base > ops {
            // A drain already took this operation (it loaded our store of
            // `ops + 1`): it belongs to the window just sealed. The new
            // window's first operation is due.
            cell.next.store(base, Ordering::Relaxed);
            return 0;
        }
        let hot = seen.hot.load(Ordering::Relaxed) != 0;
        let count = ops - base;
        cell.next.store(
            base.saturating_add(capture_next(count, hot)),
            Ordering::Relaxed,
        );
        capture_stride(count, hot)
    }
}

/// One operation of `bytes` on counter `counter` of a thread shard's
/// sub-range `s`, by its lease holder: [`COUNTED`] or [`DUE`] (a capture is
/// due).
#[inline(always)]
fn count_cell(s: &ShardSub, counter: Counter, bytes: u64) -> u8 {
    let cell = &s.cells[counter.get()];
    // `bytes` is at most MAX_OP_BYTES (the caller's contract).
    // Ordering: Relaxed — the lease holder is the only writer (see `add`).
    let ops = cell.ops.load(Ordering::Relaxed);
    cell.ops.store(ops.wrapping_add(1), Ordering::Relaxed);
    let b = cell.bytes.load(Ordering::Relaxed);
    cell.bytes.store(b.wrapping_add(bytes), Ordering::Relaxed);
    // Ordering: Relaxed — a capture heuristic (see `ShardCell`).
    if ops < cell.next.load(Ordering::Relaxed) {
        COUNTED
    } else {
        DUE
    }
}

/// The counters of one slot: a block per sub-range, the lazily allocated
/// overflow blocks, and the thread shards of busy slots.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct SlotCounters {
    /// The block of each lease index, empty until promoted; set once by that
    /// index's holder (the `OnceLock` publishes the zeroed block with
    /// release/acquire), freed with the slot and the last route table that
    /// links it (a table holds the slot too, so a block never outlives the
    /// drains of its slot). First, so that in a slot laid out at a line
    /// boundary after its 96-byte [`WriteLanes`] no lease's entry (16 bytes)
    /// straddles two lines.
    shards: [OnceLock<Arc<ShardBlock>>; MAX_SHARDS],
    blocks: Box<[SubCounters]>,
    wide: OnceLock<Box<[Wide]>>,
}

impl Drop for SlotCounters {
    fn drop(&mut self) {
        let n = self.shards.iter().filter(|s| s.get().is_some()).count();
        if n > 0 {
            // Ordering: Relaxed — a budget.
            SHARD_BYTES.fetch_sub(
                n * ShardBlock::bytes(self.blocks.len()),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }
}

/// What one drain of one sub-range produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    pub(crate) reads_leader: u64,
    pub(crate) reads_follower: u64,
    pub(crate) read_bytes: u64,
    pub(crate) writes: [u64; WRITE_LANES + 1],
    pub(crate) write_bytes: [u64; WRITE_LANES + 1],
}

impl Drained {
    pub(crate) fn is_zero(&self) -> bool {
        self.reads_leader == 0
            && self.reads_follower == 0
            && self.read_bytes == 0
            && self.writes.iter().all(|v| *v == 0)
            && self.write_bytes.iter().all(|v| *v == 0)
    }

    pub(crate) fn operations(&self) -> u64 {
        self.writes.iter().fold(
            self.reads_leader.saturating_add(self.reads_follower),
            |a, v| a.saturating_add(*v),
        )
    }
}

impl SlotCounters {
    /// `subs` zeroed sub-range blocks.
    pub(crate) fn new(subs: usize) -> SlotCounters {
        SlotCounters {
            blocks: (0..subs.max(1)).map(|_| SubCounters::default()).collect(),
            wide: OnceLock::new(),
            shards: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Where the per-lease shard entries start in the struct (layout tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn shards_offset() -> usize {
        std::mem::offset_of!(SlotCounters, shards)
    }

    /// The size of one lease's shard entry (layout tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn shard_entry_size() -> usize {
        std::mem::size_of::<OnceLock<Arc<ShardBlock>>>()
    }

    /// Number of sub-ranges.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// The shard block of lease `shard`, if promoted.
    #[inline(always)]
    fn shard(&self, shard: usize) -> Option<&ShardBlock> {
        self.shards.get(shard)?.get().map(|b| &**b)
    }

    /// The shard block of lease `lease`, if promoted: the fast path's way to
    /// it when it reads the slot anyway (a slot of several sub-ranges).
    #[inline(always)]
    pub(crate) fn lease_block(&self, lease: ShardIx) -> Option<&ShardBlock> {
        self.shards[lease.get()].get().map(|b| &**b)
    }

    /// The shard block of lease `shard` as the `Arc` a route table links
    /// ([`RouteTable::link`](super::route_table::RouteTable::link)); `None`
    /// until promoted, and for [`super::shard::NO_SHARD`].
    #[inline(always)]
    pub(crate) fn shard_block(&self, shard: usize) -> Option<&Arc<ShardBlock>> {
        self.shards.get(shard)?.get()
    }

    /// Counts one operation as lease `shard` (or [`super::shard::NO_SHARD`])
    /// and returns its capture stride ([`capture_stride`]; 0 = not captured,
    /// always when `capture` is false). A `sub` out of range counts nothing
    /// and returns 0 (the layout never yields one). A plain `u64`, not an
    /// `Option`: the observe path tests one register.
    ///
    /// On the lease holder's own shard: two relaxed loads and stores and one
    /// compare against the cell's next due capture; no locked instruction.
    #[inline(always)]
    fn add(&self, shard: usize, sub: usize, counter: usize, bytes: u64, capture: bool) -> u64 {
        if let Some(block) = self.shard(shard) {
            let Some(s) = block.sub(sub) else {
                return 0;
            };
            let cell = &s.cells[counter];
            let bytes = bytes.min(MAX_OP_BYTES);
            // Ordering: Relaxed — the lease holder is the only writer, so a
            // load and a store make an exact increment; flush only loads.
            let ops = cell.ops.load(Ordering::Relaxed);
            cell.ops.store(ops.wrapping_add(1), Ordering::Relaxed);
            let b = cell.bytes.load(Ordering::Relaxed);
            cell.bytes.store(b.wrapping_add(bytes), Ordering::Relaxed);
            // Ordering: Relaxed — a capture heuristic (see `ShardCell`).
            if ops < cell.next.load(Ordering::Relaxed) {
                return 0;
            }
            return block.capture_due(sub, counter, ops);
        }
        self.add_shared(shard, sub, counter, bytes, capture)
    }

    /// After [`ShardBlock::count`] returned [`DUE`] on this
    /// thread (the lease holder, with no other count of that cell since):
    /// the stride of that operation's capture (0 = not captured), and the
    /// cell's next due count.
    pub(crate) fn due_stride(&self, shard: ShardIx, sub: usize, counter: usize) -> u64 {
        let Some(block) = self.shard(shard.get()) else {
            return 0;
        };
        let Some(cell) = block.sub(sub).and_then(|s| s.cells.get(counter)) else {
            return 0;
        };
        // Ordering: Relaxed — our own last store: the count before it.
        let ops = cell.ops.load(Ordering::Relaxed).wrapping_sub(1);
        block.capture_due(sub, counter, ops)
    }

    /// The shared counters' path: slots not busy yet, threads without a
    /// shard lease, the slow path. Out of line, so the shard path inlined
    /// into every observe stays small.
    #[inline(never)]
    fn add_shared(
        &self,
        shard: usize,
        sub: usize,
        counter: usize,
        bytes: u64,
        capture: bool,
    ) -> u64 {
        let Some(block) = self.blocks.get(sub) else {
            return 0;
        };
        if bytes >= MAX_PACKED_ADD {
            self.add_wide(sub, counter, 1, bytes.min(MAX_OP_BYTES));
            return u64::from(capture);
        }
        // Ordering: Relaxed — an independent tally; flush's swap reads it.
        let old = block.packed[counter].fetch_add((1 << COUNT_SHIFT) | bytes, Ordering::Relaxed);
        let count = old >> COUNT_SHIFT;
        if count >= SPILL_COUNT || old & BYTES_MASK >= SPILL_BYTES {
            self.spill(sub, counter);
        }
        if count >= PROMOTE_AT && count.is_multiple_of(PROMOTE_EVERY) && shard < MAX_SHARDS {
            self.promote(shard, capture);
        }
        if !capture {
            return 0;
        }
        capture_stride(count, block.is_hot())
    }

    /// Gives lease `shard` its own block in this slot (the caller holds the
    /// lease, so it is the only thread that can store this pointer), with
    /// hot-key capture on or off as the sampler has it.
    #[cold]
    #[inline(never)]
    pub(crate) fn promote(&self, shard: usize, capture: bool) {
        let Some(cell) = self.shards.get(shard) else {
            return;
        };
        if cell.get().is_some() {
            return;
        }
        let size = ShardBlock::bytes(self.blocks.len());
        let budget = &SHARD_BYTES;
        let mut cur = budget.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            if cur + size > SHARD_BUDGET_BYTES {
                return; // stays on the shared counters: exact, one atomic add
            }
            // Ordering: Relaxed — a budget; nothing is published through it.
            match budget.compare_exchange_weak(
                cur,
                cur + size,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let block = Arc::new(ShardBlock::new(self.blocks.len(), capture));
        if cell.set(block).is_err() {
            // Only the lease holder sets this cell, so it cannot be set yet;
            // give the budget back all the same.
            SHARD_BYTES.fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Moves a packed counter into its wide overflow counter.
    #[cold]
    fn spill(&self, sub: usize, counter: usize) {
        let Some(block) = self.blocks.get(sub) else {
            return;
        };
        // Ordering: Relaxed — see `add`; an increment racing with this swap
        // stays in the packed field and is drained or spilled later.
        let v = block.packed[counter].swap(0, Ordering::Relaxed);
        self.add_wide(sub, counter, v >> COUNT_SHIFT, v & BYTES_MASK);
    }

    fn wide_blocks(&self) -> &[Wide] {
        self.wide
            .get_or_init(|| (0..self.blocks.len()).map(|_| Wide::default()).collect())
    }

    #[cold]
    fn add_wide(&self, sub: usize, counter: usize, count: u64, bytes: u64) {
        let wide = self.wide_blocks();
        if let Some(w) = wide.get(sub) {
            // Ordering: Relaxed — as for the packed counters.
            w.counts[counter].fetch_add(count, Ordering::Relaxed);
            w.bytes[counter].fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts one read of `bytes` on sub-range `sub`; returns the capture
    /// stride (0 = not captured; see `add`).
    #[inline(always)]
    pub(crate) fn add_read(
        &self,
        shard: usize,
        sub: usize,
        leader: bool,
        bytes: u64,
        capture: bool,
    ) -> u64 {
        let counter = if leader { READ_LEADER } else { READ_FOLLOWER };
        self.add(shard, sub, counter, bytes, capture)
    }

    /// Counts one write of `bytes` in `lane` on sub-range `sub`; as `add_read`.
    #[inline(always)]
    pub(crate) fn add_write(
        &self,
        shard: usize,
        sub: usize,
        lane: usize,
        bytes: u64,
        capture: bool,
    ) -> u64 {
        self.add(
            shard,
            sub,
            FIRST_WRITE + lane.min(UNKNOWN_LANE),
            bytes,
            capture,
        )
    }

    /// Seal side, after [`WriteLanes::age`] of this drain: empties every
    /// lease holder's copy of each lane that had no writes in the drain
    /// (`active[l]` false), so no copy outlives a lane the ageing frees (see
    /// [`LaneDir`]). Caller holds the seal lock. Stores only into entries that
    /// are not empty yet.
    pub(crate) fn forget_idle_lanes(&self, active: &[bool; WRITE_LANES]) {
        if active.iter().all(|a| *a) {
            return;
        }
        // Ordering: SeqCst fence, after the ageing's free (a Release CAS)
        // and before the empty stores: pairs with the one in
        // `ShardBlock::store_lane` (see `LaneDir`).
        fence(Ordering::SeqCst);
        for lease in 0..MAX_SHARDS {
            let Some(block) = self.shard(lease) else {
                continue;
            };
            for (id, _) in block.lanes.ids.iter().zip(active).filter(|(_, a)| !**a) {
                // Ordering: Relaxed — see `LaneDir`; a load first, so a quiet
                // copy's line is not dirtied every seal.
                if id.term.load(Ordering::Relaxed) != FREE {
                    id.term.store(FREE, Ordering::Relaxed);
                }
            }
        }
    }

    /// Swaps every shared counter of sub-range `sub` to zero, takes every
    /// shard's growth since the last drain, and returns the sum. Caller holds
    /// the seal lock (the only writer of the shards' `seen`).
    ///
    /// A counter that reads zero is not swapped (a locked swap costs ~10x a
    /// load): an increment racing with that load lands after it and is taken by
    /// the next drain, exactly as if it had come after a swap. A shard's
    /// increment is taken by the first drain whose load sees its store.
    pub(crate) fn drain(&self, sub: usize) -> Drained {
        let Some(block) = self.blocks.get(sub) else {
            return Drained::default();
        };
        let wide = self.wide.get().and_then(|w| w.get(sub));
        let take = |c: &AtomicU64| {
            // Ordering: Relaxed — swap is atomic per counter, which is all the
            // no-loss guarantee needs; cross-counter consistency is not promised.
            if c.load(Ordering::Relaxed) == 0 {
                0
            } else {
                c.swap(0, Ordering::Relaxed)
            }
        };
        let mut counts = [0u64; COUNTERS];
        let mut bytes = [0u64; COUNTERS];
        for i in 0..COUNTERS {
            let v = take(&block.packed[i]);
            counts[i] = v >> COUNT_SHIFT;
            bytes[i] = v & BYTES_MASK;
            if let Some(w) = wide {
                counts[i] = counts[i].saturating_add(take(&w.counts[i]));
                bytes[i] = bytes[i].saturating_add(take(&w.bytes[i]));
            }
        }
        for i in 0..MAX_SHARDS {
            let Some(shard) = self.shard(i) else {
                continue;
            };
            let Some(s) = shard.sub(sub) else {
                continue;
            };
            let seen = &s.seen;
            for c in 0..COUNTERS {
                let cell = &s.cells[c];
                // Ordering: Relaxed — per-location coherence: this load sees
                // a value at or after the one the previous drain saw, so
                // every store lands in exactly one difference.
                let ops = cell.ops.load(Ordering::Relaxed);
                let b = cell.bytes.load(Ordering::Relaxed);
                let (seen_ops, seen_b) = (
                    seen.ops[c].load(Ordering::Relaxed),
                    seen.bytes[c].load(Ordering::Relaxed),
                );
                if ops == seen_ops && b == seen_b {
                    continue;
                }
                seen.ops[c].store(ops, Ordering::Relaxed);
                seen.bytes[c].store(b, Ordering::Relaxed);
                if seen.capture {
                    // The new window's first operation is due (see `ShardCell`).
                    cell.next.store(ops, Ordering::Relaxed);
                }
                counts[c] = counts[c].saturating_add(ops.wrapping_sub(seen_ops));
                bytes[c] = bytes[c].saturating_add(b.wrapping_sub(seen_b));
            }
        }
        let ops = counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
        let hot = u64::from(ops >= HOT_ROW_OPS);
        // Ordering: Relaxed — see `is_hot`; written under the seal lock only.
        if block.hot.load(Ordering::Relaxed) != hot {
            block.hot.store(hot, Ordering::Relaxed);
        }
        for i in 0..MAX_SHARDS {
            let Some(shard) = self.shard(i) else {
                continue;
            };
            let Some(s) = shard.sub(sub) else {
                continue;
            };
            let seen = &s.seen;
            if seen.hot.load(Ordering::Relaxed) == hot {
                continue;
            }
            seen.hot.store(hot, Ordering::Relaxed);
            if seen.capture {
                // Strides follow the new flag from the next operation on.
                for (cell, taken) in s.cells.iter().zip(&seen.ops) {
                    cell.next
                        .store(taken.load(Ordering::Relaxed), Ordering::Relaxed);
                }
            }
        }
        if self.wide.get().is_none()
            && (counts.iter().any(|c| *c >= PROVISION_COUNT)
                || bytes.iter().any(|b| *b >= PROVISION_BYTES))
        {
            // Off the hot path: a busy sub-range will soon need to spill.
            self.wide_blocks();
        }
        Drained {
            reads_leader: counts[READ_LEADER],
            reads_follower: counts[READ_FOLLOWER],
            read_bytes: bytes[READ_LEADER].saturating_add(bytes[READ_FOLLOWER]),
            writes: std::array::from_fn(|l| counts[FIRST_WRITE + l]),
            write_bytes: std::array::from_fn(|l| bytes[FIRST_WRITE + l]),
        }
    }
}

/// The (raft group, leader term) identities of a slot's write lanes.
///
/// A lane is claimed by CAS on its term (FREE → CLAIMING), then the group is
/// stored, then the term is published with `Release`; a reader that sees the
/// term with `Acquire` therefore sees its group. Flush frees a lane only after
/// it has been idle for two whole windows, so an observer that matched a lane
/// is long finished before the lane can change owner.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct WriteLanes {
    /// Each lane's identity, term next to its group: the 64 bytes a write's
    /// lane search reads, one line in a slot laid out at a line boundary.
    ids: [LaneId; WRITE_LANES],
    /// Consecutive flushes with no writes; touched by flush only.
    idle: [AtomicU64; WRITE_LANES],
}

/// One write lane's identity: its term (also its state: [`FREE`],
/// [`CLAIMING`] or the term) and its group.
#[derive(Debug, Default)]
#[repr(C)]
struct LaneId {
    term: AtomicU64,
    group: AtomicU64,
}

impl WriteLanes {
    /// The lane for (group, term), claiming a free one if needed. Identity-less
    /// writes, and writes when every lane is busy with other terms, go to
    /// [`UNKNOWN_LANE`]. Lock-free: at most `WRITE_LANES` CAS attempts.
    #[inline(always)]
    pub(crate) fn lane_for(&self, group: u64, term: u64) -> usize {
        match self.find(group, term) {
            Some(lane) => lane,
            None => self.claim(group, term),
        }
    }

    /// [`lane_for`](WriteLanes::lane_for) without claiming: `None` when
    /// (group, term) has no lane yet.
    #[inline(always)]
    pub(crate) fn find(&self, group: u64, term: u64) -> Option<usize> {
        if group == 0 || term == 0 || term == CLAIMING {
            return Some(UNKNOWN_LANE);
        }
        for i in 0..WRITE_LANES {
            // Ordering: Acquire pairs with the Release publish in the claim
            // below, so the group read after it belongs to this term.
            let t = self.ids[i].term.load(Ordering::Acquire);
            if t == term && self.ids[i].group.load(Ordering::Relaxed) == group {
                return Some(i);
            }
        }
        None
    }

    /// A free lane claimed for (group, term) (the first write of a new
    /// identity in a while), or [`UNKNOWN_LANE`].
    #[cold]
    #[inline(never)]
    fn claim(&self, group: u64, term: u64) -> usize {
        for i in 0..WRITE_LANES {
            // Ordering: Acquire on success to own the lane before writing it.
            if self.ids[i]
                .term
                .compare_exchange(FREE, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.ids[i].group.store(group, Ordering::Relaxed);
                // Ordering: Release publishes the group store above.
                self.ids[i].term.store(term, Ordering::Release);
                return i;
            }
            // Another observer may have just claimed it for the same identity.
            if self.ids[i].term.load(Ordering::Acquire) == term
                && self.ids[i].group.load(Ordering::Relaxed) == group
            {
                return i;
            }
        }
        UNKNOWN_LANE
    }

    /// The identity of `lane` as of now ((0, 0) for the unknown lane or a free one).
    pub(crate) fn identity(&self, lane: usize) -> (u64, u64) {
        if lane >= WRITE_LANES {
            return (0, 0);
        }
        // Ordering: Acquire pairs with the claim's Release.
        let term = self.ids[lane].term.load(Ordering::Acquire);
        if term == FREE || term == CLAIMING {
            return (0, 0);
        }
        (self.ids[lane].group.load(Ordering::Relaxed), term)
    }

    /// Called by flush after draining: frees lanes idle for two windows.
    /// `active[l]` says whether lane `l` had writes in this drain.
    pub(crate) fn age(&self, active: &[bool; WRITE_LANES]) {
        for (i, was_active) in active.iter().enumerate() {
            // Ordering: Relaxed — `idle` is only touched under the flush lock,
            // so a plain load + store (no locked read-modify-write) suffices.
            if *was_active {
                self.idle[i].store(0, Ordering::Relaxed);
                continue;
            }
            if self.ids[i].term.load(Ordering::Relaxed) == FREE {
                continue;
            }
            let idle = self.idle[i].load(Ordering::Relaxed) + 1;
            self.idle[i].store(idle, Ordering::Relaxed);
            if idle >= 2 {
                let term = self.ids[i].term.load(Ordering::Acquire);
                if term != FREE && term != CLAIMING {
                    // Ordering: Release so a later claimer's Acquire CAS orders
                    // after our last drain of this lane.
                    let _ = self.ids[i].term.compare_exchange(
                        term,
                        FREE,
                        Ordering::Release,
                        Ordering::Relaxed,
                    );
                }
                self.idle[i].store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// An observe racing a drain is counted exactly once, in one drain or the next.
    #[test]
    fn observe_racing_drain_is_counted_once() {
        loom::model(|| {
            let c = loom::sync::Arc::new(SlotCounters::new(1));
            let c2 = loom::sync::Arc::clone(&c);
            let t = loom::thread::spawn(move || {
                c2.add_write(super::super::shard::NO_SHARD, 0, 0, 3, false);
            });
            let first = c.drain(0);
            t.join().expect("observer");
            let second = c.drain(0);
            assert_eq!(first.writes[0] + second.writes[0], 1);
            assert_eq!(first.write_bytes[0] + second.write_bytes[0], 3);
        });
    }

    /// A thread shard's load + store increments racing two drains are each
    /// taken exactly once, alongside a shared-counter observer.
    #[test]
    fn shard_increments_racing_drains_are_counted_once() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let c = loom::sync::Arc::new(SlotCounters::new(1));
            c.promote(0, true);
            assert!(c.shard(0).is_some(), "promoted");
            let (c2, c3) = (loom::sync::Arc::clone(&c), loom::sync::Arc::clone(&c));
            let sharded = loom::thread::spawn(move || {
                c2.add_write(0, 0, 0, 3, true);
                c2.add_write(0, 0, 0, 5, true);
            });
            let shared = loom::thread::spawn(move || {
                c3.add_write(super::super::shard::NO_SHARD, 0, 0, 7, false);
            });
            let first = c.drain(0);
            let second = c.drain(0);
            sharded.join().expect("observer");
            shared.join().expect("observer");
            let last = c.drain(0);
            let ops = first.writes[0] + second.writes[0] + last.writes[0];
            let bytes = first.write_bytes[0] + second.write_bytes[0] + last.write_bytes[0];
            assert_eq!(ops, 3);
            assert_eq!(bytes, 15);
            assert!(c.drain(0).is_zero());
        });
    }

    /// A shard handed from one thread to the next (the lease's
    /// release/acquire, modelled by a flag) continues from the latest
    /// cumulative value: no increment is lost or repeated across the
    /// hand-over, with a seal draining all the while.
    #[test]
    fn shard_hand_over_between_lease_holders_loses_nothing() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let c = loom::sync::Arc::new(SlotCounters::new(1));
            c.promote(0, true);
            let lease = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(true));
            let (c2, l2) = (loom::sync::Arc::clone(&c), loom::sync::Arc::clone(&lease));
            let first_holder = loom::thread::spawn(move || {
                c2.add_read(0, 0, true, 1, false);
                l2.store(false, Ordering::Release);
            });
            let (c3, l3) = (loom::sync::Arc::clone(&c), loom::sync::Arc::clone(&lease));
            let next_holder = loom::thread::spawn(move || {
                if l3
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    c3.add_read(0, 0, true, 1, false);
                    true
                } else {
                    false
                }
            });
            let during = c.drain(0);
            first_holder.join().expect("holder");
            let second = next_holder.join().expect("holder");
            let after = c.drain(0);
            let expected = 1 + u64::from(second);
            assert_eq!(during.reads_leader + after.reads_leader, expected);
            assert_eq!(during.read_bytes + after.read_bytes, expected);
        });
    }

    /// Two observers claiming a lane for one identity at once both get a lane
    /// of that identity (possibly two lanes; flush joins equal identities).
    #[test]
    fn concurrent_claims_both_get_a_lane_of_that_identity() {
        loom::model(|| {
            let l = loom::sync::Arc::new(WriteLanes::default());
            let l2 = loom::sync::Arc::clone(&l);
            let t = loom::thread::spawn(move || l2.lane_for(7, 42));
            let mine = l.lane_for(7, 42);
            let theirs = t.join().expect("observer");
            assert!(mine < WRITE_LANES && theirs < WRITE_LANES);
            assert_eq!(l.identity(mine), (7, 42));
            assert_eq!(l.identity(theirs), (7, 42));
        });
    }

    /// A lease holder remembering a lane in its block's copy while a seal
    /// frees that lane (its second idle window) and empties the copies:
    /// however the two interleave, once both are done the copy does not name
    /// the freed lane (the two `SeqCst` fences of `LaneDir`).
    #[test]
    fn a_lane_copy_never_outlives_the_lane_a_seal_frees() {
        loom::model(|| {
            let c = loom::sync::Arc::new(SlotCounters::new(1));
            c.promote(0, false);
            let lanes = loom::sync::Arc::new(WriteLanes::default());
            let lane = lanes.lane_for(7, 42);
            // One idle window already: the next idle drain frees the lane.
            lanes.age(&[false; WRITE_LANES]);
            let (c2, l2) = (loom::sync::Arc::clone(&c), loom::sync::Arc::clone(&lanes));
            let holder = loom::thread::spawn(move || {
                let block = c2.shard_block(0).expect("promoted");
                block.remember_lane(lane, 7, 42, &l2);
            });
            lanes.age(&[false; WRITE_LANES]);
            c.forget_idle_lanes(&[false; WRITE_LANES]);
            holder.join().expect("holder");
            assert_eq!(lanes.identity(lane), (0, 0), "freed");
            let block = c.shard_block(0).expect("promoted");
            assert_eq!(block.lane(7, 42), None, "no copy of the freed lane");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::shard::NO_SHARD;
    use super::*;

    #[test]
    fn capture_strides_tile_the_count_exactly_one_capture_per_block() {
        for hot in [true, false] {
            let mut weight = 0u64;
            let mut captures = 0u64;
            let n = 1u64 << 20;
            for c in 0..n {
                let s = capture_stride(c, hot);
                if s > 0 {
                    // The block of a capture starts on a multiple of its stride.
                    assert!(s.is_power_of_two());
                    weight += s;
                    captures += 1;
                }
            }
            assert_eq!(weight, n, "captured weight equals the count (hot {hot})");
            let exact = 2u64 << EXACT_CAPTURE_SHIFT;
            assert!(
                captures <= exact + (exact / 2) * 10,
                "logarithmic captures: {captures}"
            );
            if hot {
                assert!(
                    (0..exact).all(|c| capture_stride(c, true) == 1),
                    "a hot row's young counter is exact"
                );
                assert_eq!(capture_stride(exact, true), 2);
            } else {
                assert!((0..QUIET_EXACT).all(|c| capture_stride(c, false) == 1));
                let first_thousand = (0..1_000).filter(|c| capture_stride(*c, false) > 0).count();
                assert!(
                    first_thousand <= QUIET_EXACT as usize + 1 + 1_000 / 64 + 1,
                    "a quiet row captures about 1 in 64: {first_thousand}"
                );
            }
        }
    }

    #[test]
    fn counters_fit_in_one_cache_line() {
        assert_eq!(std::mem::size_of::<SubCounters>(), 64);
        // A shard counter's observe touches one 32-byte cell: two per line.
        assert_eq!(std::mem::size_of::<ShardCell>(), 32);
        assert_eq!(std::mem::size_of::<ShardSeen>(), 128);
        assert_eq!(std::mem::size_of::<ShardSub>(), 384);
        assert_eq!(std::mem::offset_of!(ShardSub, seen), 256);
        // The lane copy's line, then sub-range 0 (`more` in its padding).
        assert_eq!(std::mem::size_of::<LaneDir>(), 64);
        assert_eq!(std::mem::offset_of!(ShardBlock, lanes), 0);
        assert_eq!(std::mem::offset_of!(ShardBlock, first), 64);
        assert_eq!(
            std::mem::size_of::<ShardBlock>(),
            448,
            "no padding for `more`"
        );
        assert_eq!(ShardBlock::bytes(1), 512, "with the Arc's counts");
        // A write's lane search reads the four (term, group) pairs: one line
        // when the lanes start a line (they start the slot).
        assert_eq!(std::mem::offset_of!(WriteLanes, ids), 0);
        assert_eq!(std::mem::size_of::<[LaneId; WRITE_LANES]>(), 64);
    }

    /// Brute force: the smallest count after `c` that `capture_stride` captures.
    fn next_by_scan(c: u64, hot: bool) -> u64 {
        (c + 1..)
            .find(|n| capture_stride(*n, hot) != 0)
            .expect("a capture")
    }

    #[test]
    fn capture_next_names_exactly_the_counts_capture_stride_captures() {
        for hot in [true, false] {
            // Every count up to 2^20 (strides up to 1 024), walked as a shard does.
            let mut due = 0u64;
            for c in 0..1u64 << 20 {
                let captured = capture_stride(c, hot) != 0;
                assert_eq!(c == due, captured, "count {c} hot {hot}");
                if c == due {
                    due = capture_next(c, hot);
                    assert!(due > c);
                }
            }
            // Larger counts (strides up to 2^14, so the scan stays short),
            // around the stride changes and elsewhere.
            let mut x = 0x1234_5678_9abc_def0u64;
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let c = x >> 40;
                assert_eq!(capture_next(c, hot), next_by_scan(c, hot), "count {c}");
            }
            for shift in 10..24 {
                let edge = 1u64 << shift;
                for c in [edge - 2, edge - 1, edge, edge + 1] {
                    assert_eq!(capture_next(c, hot), next_by_scan(c, hot), "count {c}");
                }
            }
        }
        assert_eq!(capture_next(u64::MAX, true), u64::MAX);
    }

    #[test]
    fn a_shard_with_capture_off_counts_exactly_and_captures_nothing() {
        let c = SlotCounters::new(1);
        c.promote(0, false);
        for _ in 0..5_000 {
            assert_eq!(c.add_write(0, 0, 1, 3, false), 0);
        }
        let d = c.drain(0);
        assert_eq!((d.writes[1], d.write_bytes[1]), (5_000, 15_000));
        // A hot row after that window: still nothing captured.
        assert_eq!(c.add_write(0, 0, 1, 3, false), 0);
        assert_eq!(c.drain(0).writes[1], 1);
    }

    #[test]
    fn packed_fields_spill_before_they_overflow() {
        let c = SlotCounters::new(1);
        // Drive the count field past its spill point, and the bytes field too.
        let n = SPILL_COUNT + 10;
        for _ in 0..n {
            c.add_read(NO_SHARD, 0, true, 0, false);
        }
        c.add_write(NO_SHARD, 0, 0, MAX_PACKED_ADD + 7, false);
        let big = MAX_PACKED_ADD - 1;
        let adds = 2 * (SPILL_BYTES / big) + 3;
        for _ in 0..adds {
            c.add_write(NO_SHARD, 0, 0, big, false);
        }
        let d = c.drain(0);
        assert_eq!(d.reads_leader, n);
        assert_eq!(d.writes[0], 1 + adds);
        assert_eq!(d.write_bytes[0], MAX_PACKED_ADD + 7 + adds * big);
        assert!(c.drain(0).is_zero());
    }

    #[test]
    fn a_busy_shared_counter_promotes_its_lease_to_an_exact_shard() {
        let c = SlotCounters::new(2);
        let n = PROMOTE_AT + 1_000;
        for _ in 0..n {
            c.add_write(3, 1, 0, 10, true);
        }
        assert!(c.shard(3).is_some(), "promoted after {PROMOTE_AT} ops");
        assert!(c.shard(2).is_none(), "only the busy lease");
        // Huge values are clamped, not wrapped.
        c.add_write(3, 1, 0, u64::MAX, true);
        let d = c.drain(1);
        assert_eq!(d.writes[0], n + 1);
        assert_eq!(d.write_bytes[0], n * 10 + MAX_OP_BYTES);
        assert!(c.drain(1).is_zero(), "a shard is taken once");
        c.add_read(3, 1, false, 4, true);
        let d = c.drain(1);
        assert_eq!((d.reads_follower, d.read_bytes), (1, 4));
        assert!(c.drain(0).is_zero(), "other sub-ranges untouched");
    }

    #[test]
    fn the_fast_path_counts_each_sub_range_of_a_shard_block_apart() {
        // The first sub-range lives inline in the block, the others in its `more`:
        // each count lands in its own sub-range and drains exactly once.
        let c = SlotCounters::new(3);
        c.promote(5, true);
        assert!(c.shard_block(4).is_none(), "only the promoted lease");
        let block = c.shard_block(5).expect("promoted");
        for sub in 0..3u64 {
            for _ in 0..=sub {
                let r = block.count(sub as usize, Counter::write(1), 10 + sub);
                assert_ne!(r, NO_BLOCK, "the lease has a block");
            }
        }
        for _ in 0..4 {
            assert_ne!(block.count_first(Counter::ReadFollower, 7), NO_BLOCK);
        }
        assert_eq!(
            block.count(3, Counter::Lane0, 1),
            NO_BLOCK,
            "past the last sub-range nothing is counted"
        );
        for sub in 0..3u64 {
            let d = c.drain(sub as usize);
            assert_eq!(d.writes[1], sub + 1, "sub-range {sub}");
            assert_eq!(d.write_bytes[1], (sub + 1) * (10 + sub), "sub-range {sub}");
            let reads = if sub == 0 { (4, 28) } else { (0, 0) };
            assert_eq!((d.reads_follower, d.read_bytes), reads, "sub-range {sub}");
            assert!(c.drain(sub as usize).is_zero(), "taken once");
        }
    }

    #[test]
    fn counter_names_each_counter_in_counter_order() {
        assert_eq!(Counter::read(true).get(), read_counter(true));
        assert_eq!(Counter::read(false).get(), read_counter(false));
        for lane in 0..=UNKNOWN_LANE + 2 {
            assert_eq!(
                Counter::write(lane).get(),
                write_counter(lane),
                "lane {lane}"
            );
        }
    }

    #[test]
    fn shard_capture_strides_restart_after_each_drain_and_escalate_in_hot_rows() {
        let c = SlotCounters::new(1);
        c.promote(0, true);
        let exact = 2u64 << EXACT_CAPTURE_SHIFT;
        let strides = |c: &SlotCounters| -> Vec<u64> {
            (0..exact + 1)
                .map(|_| c.add_read(0, 0, true, 1, true))
                .collect()
        };
        // A quiet row (no previous window): exact only for QUIET_EXACT ops.
        let quiet = strides(&c);
        let expect: Vec<u64> = (0..=exact).map(|n| capture_stride(n, false)).collect();
        assert_eq!(quiet, expect);
        assert!(quiet.iter().filter(|s| **s == 64).count() > 0, "sampled");
        // That window had 1 025 ops, under HOT_ROW_OPS: still quiet.
        let _ = c.drain(0);
        assert_eq!(c.add_read(0, 0, true, 1, true), 1, "young again");
        for _ in 0..HOT_ROW_OPS {
            c.add_read(0, 0, true, 1, true);
        }
        let _ = c.drain(0);
        // The previous window was busy: every op of the first 1 024 is captured.
        let hot = strides(&c);
        assert!(hot[..exact as usize].iter().all(|s| *s == 1));
        assert_eq!(hot[exact as usize], capture_stride(exact, true));
    }

    #[test]
    fn a_blocks_lane_copy_names_only_lanes_the_slot_still_has() {
        let c = SlotCounters::new(1);
        let lanes = WriteLanes::default();
        c.promote(0, false);
        let block = c.shard_block(0).expect("promoted");
        assert_eq!(block.lane(0, 5), Some(Counter::Unknown), "no identity");
        assert_eq!(block.lane(7, 42), None, "nothing remembered yet");
        let lane = lanes.lane_for(7, 42);
        block.remember_lane(lane, 7, 42, &lanes);
        assert_eq!(block.lane(7, 42), Some(Counter::write(lane)));
        assert_eq!(block.lane(8, 42), None, "the group is part of the identity");
        // A lane the slot does not hold for that identity is not remembered
        // (the re-check after the store).
        block.remember_lane(lane + 1, 7, 43, &lanes);
        assert_eq!(block.lane(7, 43), None);
        // A lane busy in the drain keeps its copy; an idle one loses it,
        // before the ageing can free the slot's lane.
        let mut active = [false; WRITE_LANES];
        active[lane] = true;
        lanes.age(&active);
        c.forget_idle_lanes(&active);
        assert_eq!(block.lane(7, 42), Some(Counter::write(lane)));
        lanes.age(&[false; WRITE_LANES]);
        c.forget_idle_lanes(&[false; WRITE_LANES]);
        assert_eq!(block.lane(7, 42), None, "idle: emptied");
        lanes.age(&[false; WRITE_LANES]);
        assert_eq!(lanes.identity(lane), (0, 0), "freed after two idle windows");
        // The lane's next owner is remembered under its own identity.
        let next = lanes.lane_for(7, 44);
        block.remember_lane(next, 7, 44, &lanes);
        assert_eq!(block.lane(7, 44), Some(Counter::write(next)));
        assert_eq!(block.lane(7, 42), None);
    }

    #[test]
    fn lanes_keep_terms_apart_and_fall_back_when_full() {
        let lanes = WriteLanes::default();
        let a = lanes.lane_for(7, 42);
        let b = lanes.lane_for(7, 43);
        assert_ne!(a, b);
        assert_eq!(lanes.lane_for(7, 42), a);
        assert_eq!(lanes.identity(b), (7, 43));
        assert_eq!(lanes.lane_for(0, 5), UNKNOWN_LANE);
        lanes.lane_for(7, 44);
        lanes.lane_for(7, 45);
        assert_eq!(lanes.lane_for(7, 46), UNKNOWN_LANE);
    }

    #[test]
    fn idle_lanes_are_freed_after_two_windows() {
        let lanes = WriteLanes::default();
        let a = lanes.lane_for(1, 2);
        let mut active = [false; WRITE_LANES];
        active[a] = true;
        lanes.age(&active);
        assert_eq!(lanes.identity(a), (1, 2));
        lanes.age(&[false; WRITE_LANES]);
        assert_eq!(lanes.identity(a), (1, 2));
        lanes.age(&[false; WRITE_LANES]);
        assert_eq!(lanes.identity(a), (0, 0));
    }
}
