//! The counters one observation touches, and how flush drains them.
//!
//! Each counter packs an operation count (high 24 bits) and a byte count (low
//! 40 bits) into one `AtomicU64`, so an observation is a single relaxed
//! `fetch_add` — half the locked instructions of separate count and byte
//! counters. Before a field can overflow, the observer that sees it past half
//! full moves the packed value into a wide per-slot overflow block. Flush
//! allocates that block as soon as a slot shows a busy window (2^18 operations
//! or 16 GiB in one sub-range), so the hot path itself allocates only if a
//! sub-range goes from quiet to 2^23 operations inside a single window, once in
//! the slot's life. All counters of one sub-range share one 64-byte line.
//!
//! Increments are `Relaxed`: each counter is an independent tally and nothing
//! is published through it. Flush drains with `swap(0)`, so an increment lands
//! either before the swap (this column) or after it (the next column) — never
//! lost, never counted twice.

use std::sync::OnceLock;

use crate::sync::{AtomicU64, Ordering};

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
/// A drained window this busy makes flush provision the overflow block.
const PROVISION_COUNT: u64 = 1 << 18;
const PROVISION_BYTES: u64 = 1 << 34;

/// `log2` of half the operations per counter and window that are all
/// captured: with 9, the first 1 024 operations of a counter in a window are,
/// then 512 per doubling of the count. 512 captures per doubling keep the
/// estimate of a key with a 10 % share within about 7 % (one sigma) however
/// busy the row; 32 per doubling measured a 28 % miss (see `docs/PERFORMANCE.md`).
pub(crate) const EXACT_CAPTURE_SHIFT: u32 = 9;

/// Whether the operation that found `count` earlier operations on its counter
/// in this window is captured for hot keys, and with what weight.
///
/// Returns 0 (not captured) or the stride `s`: the captured operation stands
/// for `s` operations. While `count < 1024`, `s = 1` (every operation). From
/// there, in each range `[512·2^j, 512·2^(j+1))` (`j >= 1`), the operations are
/// cut into aligned blocks of `s = 2^j` and exactly one operation of each
/// block is captured, at a position picked by hashing the block number.
/// The blocks tile the count exactly, so the captured weight of a counter
/// equals its count up to the last, partly filled block. The position is
/// hashed rather than fixed so that periodic traffic (a client cycling
/// through ten keys) does not alias with the stride; it is still a pure
/// function of the count, so two nodes fed the same traffic capture the same
/// operations. Costs a shift and a compare below 1 024; past it a leading-zero
/// count, a multiply and a mask test — decided on the `fetch_add` result the
/// count already paid for, so the path reads no extra memory.
#[inline]
pub(crate) fn capture_stride(count: u64) -> u64 {
    let q = count >> EXACT_CAPTURE_SHIFT;
    if q < 2 {
        return 1;
    }
    let j = 63 - q.leading_zeros();
    let s = 1u64 << j;
    // Fibonacci hashing of the block number; its high bits pick the phase.
    let phase = ((count >> j).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) & (s - 1);
    if count & (s - 1) == phase { s } else { 0 }
}

/// Packed counters of one sub-range, on their own 64-byte line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct SubCounters {
    packed: [AtomicU64; COUNTERS],
}

/// Wide overflow counters of one sub-range: (count, bytes) per packed counter.
#[derive(Debug, Default)]
struct Wide {
    counts: [AtomicU64; COUNTERS],
    bytes: [AtomicU64; COUNTERS],
}

/// The counters of one slot: a block per sub-range plus the lazily allocated
/// overflow blocks.
#[derive(Debug)]
pub(crate) struct SlotCounters {
    blocks: Box<[SubCounters]>,
    wide: OnceLock<Box<[Wide]>>,
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
        }
    }

    /// Number of sub-ranges.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Counts one operation; returns `None` when `sub` is out of range, else
    /// the capture stride of this operation ([`capture_stride`]; 0 = not
    /// captured).
    #[inline]
    fn add(&self, sub: usize, counter: usize, bytes: u64) -> Option<u64> {
        let block = self.blocks.get(sub)?;
        if bytes >= MAX_PACKED_ADD {
            self.add_wide(sub, counter, 1, bytes);
            return Some(1);
        }
        // Ordering: Relaxed — an independent tally; flush's swap reads it.
        let old = block.packed[counter].fetch_add((1 << COUNT_SHIFT) | bytes, Ordering::Relaxed);
        let count = old >> COUNT_SHIFT;
        if count >= SPILL_COUNT || old & BYTES_MASK >= SPILL_BYTES {
            self.spill(sub, counter);
        }
        Some(capture_stride(count))
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

    /// Counts one read of `bytes` on sub-range `sub`; `None` if `sub` is out
    /// of range, else the capture stride (0 = not captured).
    #[inline]
    pub(crate) fn add_read(&self, sub: usize, leader: bool, bytes: u64) -> Option<u64> {
        self.add(sub, if leader { READ_LEADER } else { READ_FOLLOWER }, bytes)
    }

    /// Counts one write of `bytes` in `lane` on sub-range `sub`; as `add_read`.
    #[inline]
    pub(crate) fn add_write(&self, sub: usize, lane: usize, bytes: u64) -> Option<u64> {
        self.add(sub, FIRST_WRITE + lane.min(UNKNOWN_LANE), bytes)
    }

    /// Swaps every counter of sub-range `sub` to zero and returns what it held.
    ///
    /// A counter that reads zero is not swapped (a locked swap costs ~10x a
    /// load): an increment racing with that load lands after it and is taken by
    /// the next drain, exactly as if it had come after a swap.
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
pub(crate) struct WriteLanes {
    terms: [AtomicU64; WRITE_LANES],
    groups: [AtomicU64; WRITE_LANES],
    /// Consecutive flushes with no writes; touched by flush only.
    idle: [AtomicU64; WRITE_LANES],
}

impl WriteLanes {
    /// The lane for (group, term), claiming a free one if needed. Identity-less
    /// writes, and writes when every lane is busy with other terms, go to
    /// [`UNKNOWN_LANE`]. Lock-free: at most `WRITE_LANES` CAS attempts.
    #[inline]
    pub(crate) fn lane_for(&self, group: u64, term: u64) -> usize {
        if group == 0 || term == 0 || term == CLAIMING {
            return UNKNOWN_LANE;
        }
        for i in 0..WRITE_LANES {
            // Ordering: Acquire pairs with the Release publish in the claim
            // below, so the group read after it belongs to this term.
            let t = self.terms[i].load(Ordering::Acquire);
            if t == term && self.groups[i].load(Ordering::Relaxed) == group {
                return i;
            }
        }
        for i in 0..WRITE_LANES {
            // Ordering: Acquire on success to own the lane before writing it.
            if self.terms[i]
                .compare_exchange(FREE, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.groups[i].store(group, Ordering::Relaxed);
                // Ordering: Release publishes the group store above.
                self.terms[i].store(term, Ordering::Release);
                return i;
            }
            // Another observer may have just claimed it for the same identity.
            if self.terms[i].load(Ordering::Acquire) == term
                && self.groups[i].load(Ordering::Relaxed) == group
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
        let term = self.terms[lane].load(Ordering::Acquire);
        if term == FREE || term == CLAIMING {
            return (0, 0);
        }
        (self.groups[lane].load(Ordering::Relaxed), term)
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
            if self.terms[i].load(Ordering::Relaxed) == FREE {
                continue;
            }
            let idle = self.idle[i].load(Ordering::Relaxed) + 1;
            self.idle[i].store(idle, Ordering::Relaxed);
            if idle >= 2 {
                let term = self.terms[i].load(Ordering::Acquire);
                if term != FREE && term != CLAIMING {
                    // Ordering: Release so a later claimer's Acquire CAS orders
                    // after our last drain of this lane.
                    let _ = self.terms[i].compare_exchange(
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
                c2.add_write(0, 0, 3);
            });
            let first = c.drain(0);
            t.join().expect("observer");
            let second = c.drain(0);
            assert_eq!(first.writes[0] + second.writes[0], 1);
            assert_eq!(first.write_bytes[0] + second.write_bytes[0], 3);
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
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn capture_strides_tile_the_count_exactly_one_capture_per_block() {
        let mut weight = 0u64;
        let mut captures = 0u64;
        let n = 1u64 << 20;
        for c in 0..n {
            let s = capture_stride(c);
            if s > 0 {
                // The block of a capture starts on a multiple of its stride.
                assert!(s.is_power_of_two());
                weight += s;
                captures += 1;
            }
        }
        assert_eq!(weight, n, "captured weight equals the count");
        let exact = 2u64 << EXACT_CAPTURE_SHIFT;
        assert!(
            captures <= exact + (exact / 2) * 10,
            "logarithmic captures: {captures}"
        );
        assert!(
            (0..exact).all(|c| capture_stride(c) == 1),
            "a quiet counter is exact"
        );
        assert_eq!(capture_stride(exact), 2);
    }

    #[test]
    fn counters_fit_in_one_cache_line() {
        assert_eq!(std::mem::size_of::<SubCounters>(), 64);
    }

    #[test]
    fn packed_fields_spill_before_they_overflow() {
        let c = SlotCounters::new(1);
        // Drive the count field past its spill point, and the bytes field too.
        let n = SPILL_COUNT + 10;
        for _ in 0..n {
            c.add_read(0, true, 0);
        }
        c.add_write(0, 0, MAX_PACKED_ADD + 7);
        let big = MAX_PACKED_ADD - 1;
        let adds = 2 * (SPILL_BYTES / big) + 3;
        for _ in 0..adds {
            c.add_write(0, 0, big);
        }
        let d = c.drain(0);
        assert_eq!(d.reads_leader, n);
        assert_eq!(d.writes[0], 1 + adds);
        assert_eq!(d.write_bytes[0], MAX_PACKED_ADD + 7 + adds * big);
        assert!(c.drain(0).is_zero());
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
