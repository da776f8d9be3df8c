//! The counters one observation touches, and how flush drains them.
//!
//! All counters of one sub-range live in one cache-padded block, so an observe
//! touches one cache line (two when it claims a write lane) and two hot routes
//! never share a line. Increments are `Relaxed`: each counter is an independent
//! tally and nothing is published through it. Flush drains with `swap(0)`, so
//! an increment lands either before the swap (this column) or after it (the
//! next column) — never lost, never counted twice.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering};

/// Write lanes with an identity per slot. A leadership flip inside one window
/// uses a second lane; four cover any realistic churn, and a fifth pseudo-lane
/// counts writes whose identity is unknown or did not fit.
pub(crate) const WRITE_LANES: usize = 4;
/// Index of the lane for writes without a (group, term) identity.
pub(crate) const UNKNOWN_LANE: usize = WRITE_LANES;

/// Lane key value meaning "free".
const FREE: u64 = 0;
/// Lane key value meaning "being claimed" (group not yet published).
const CLAIMING: u64 = u64::MAX;

/// Counters of one sub-range (104 bytes; padded to its own cache line).
#[derive(Debug, Default)]
pub(crate) struct SubCounters {
    reads_leader: AtomicU64,
    reads_follower: AtomicU64,
    read_bytes: AtomicU64,
    writes: [AtomicU64; WRITE_LANES + 1],
    write_bytes: [AtomicU64; WRITE_LANES + 1],
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

impl SubCounters {
    #[inline]
    pub(crate) fn add_read(&self, leader: bool, bytes: u64) {
        // Ordering: Relaxed — independent tallies; flush's swap reads the total.
        if leader {
            self.reads_leader.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reads_follower.fetch_add(1, Ordering::Relaxed);
        }
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add_write(&self, lane: usize, bytes: u64) {
        // Ordering: Relaxed — as for reads.
        self.writes[lane].fetch_add(1, Ordering::Relaxed);
        self.write_bytes[lane].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Swaps every counter to zero and returns what it held.
    ///
    /// A counter that reads zero is not swapped (a locked swap costs ~10x a
    /// load): an increment racing with that load lands after it and is taken by
    /// the next drain, exactly as if it had come after a swap.
    pub(crate) fn drain(&self) -> Drained {
        // Ordering: Relaxed — swap is atomic per counter, which is all the
        // no-loss guarantee needs; cross-counter consistency is not promised.
        let take = |c: &AtomicU64| {
            if c.load(Ordering::Relaxed) == 0 {
                0
            } else {
                c.swap(0, Ordering::Relaxed)
            }
        };
        Drained {
            reads_leader: take(&self.reads_leader),
            reads_follower: take(&self.reads_follower),
            read_bytes: take(&self.read_bytes),
            writes: std::array::from_fn(|i| take(&self.writes[i])),
            write_bytes: std::array::from_fn(|i| take(&self.write_bytes[i])),
        }
    }
}

/// One block per sub-range.
pub(crate) type CounterBlock = CachePadded<SubCounters>;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fit_in_one_cache_line() {
        assert!(std::mem::size_of::<SubCounters>() <= 128);
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
