//! Shard leases: which thread may write which thread shard of a slot.
//!
//! A thread shard ([`super::counters`]) is written with a plain load and
//! store, which is exact only while one thread at a time writes it. Each
//! thread therefore takes, on its first observation, one of
//! [`MAX_SHARDS`](super::counters::MAX_SHARDS) process-wide lease indices
//! (a bit in [`LEASES`]) and gives it back when it exits. A thread that finds
//! every index taken observes through the shared atomic counters instead
//! (still exact). Index `i` names shard `i` in every slot of every sampler,
//! so a lease costs nothing per slot until the slot gets busy.
//!
//! Hand-over: the exiting holder clears its bit with `Release` after its last
//! store to any shard; the next holder sets it with `Acquire`, so it starts
//! from the latest cumulative values.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::counters::MAX_SHARDS;

/// "No shard": observe through the shared atomic counters.
pub(crate) const NO_SHARD: usize = usize::MAX;
/// Not asked for yet on this thread.
pub(crate) const UNSET: usize = usize::MAX - 1;

/// A lease index as a type that can only hold `0..MAX_SHARDS`, so indexing
/// a per-lease array with it needs no bounds check (the compiler knows the
/// range from the enum). The fast path caches it next to the stamp that says
/// it is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ShardIx {
    /// Lease 0.
    S0 = 0,
    /// Lease 1.
    S1,
    /// Lease 2.
    S2,
    /// Lease 3.
    S3,
    /// Lease 4.
    S4,
    /// Lease 5.
    S5,
    /// Lease 6.
    S6,
    /// Lease 7.
    S7,
}

const _: () = assert!(MAX_SHARDS == 8, "ShardIx has one variant per lease index");

impl ShardIx {
    /// The lease index `i` as a `ShardIx`; `None` for [`NO_SHARD`], [`UNSET`]
    /// or anything else past [`MAX_SHARDS`].
    pub(crate) fn new(i: usize) -> Option<ShardIx> {
        Some(match i {
            0 => ShardIx::S0,
            1 => ShardIx::S1,
            2 => ShardIx::S2,
            3 => ShardIx::S3,
            4 => ShardIx::S4,
            5 => ShardIx::S5,
            6 => ShardIx::S6,
            7 => ShardIx::S7,
            _ => return None,
        })
    }

    /// The lease index, below [`MAX_SHARDS`].
    #[inline(always)]
    pub(crate) fn get(self) -> usize {
        self as usize
    }
}

/// Lease bitmap: bit `i` set while a thread holds index `i`.
static LEASES: AtomicU64 = AtomicU64::new(0);

/// A thread's lease, claimed on first use; gives its index back when dropped
/// (with the thread-local that holds it, at thread exit). Keep it in the same
/// thread-local as anything that caches its index, so nothing can write a
/// shard with an index already handed back.
#[derive(Debug)]
pub(crate) struct Lease(Cell<usize>);

impl Lease {
    /// A lease not claimed yet.
    pub(crate) const fn new() -> Lease {
        Lease(Cell::new(UNSET))
    }

    /// The index this lease holds, claiming one on first use; [`NO_SHARD`]
    /// when every index was taken then.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        let i = self.0.get();
        if i != UNSET {
            return i;
        }
        let i = claim();
        self.0.set(i);
        i
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let i = self.0.get();
        if i < MAX_SHARDS {
            // Ordering: Release — our shard stores happen before the next
            // holder's Acquire claim.
            LEASES.fetch_and(!(1u64 << i), Ordering::Release);
        }
    }
}

#[cold]
#[inline(never)]
fn claim() -> usize {
    // Ordering: Acquire on success — see the module docs.
    let mut cur = LEASES.load(Ordering::Relaxed);
    loop {
        let free = !cur & ((1u64 << MAX_SHARDS) - 1);
        if free == 0 {
            return NO_SHARD;
        }
        let i = free.trailing_zeros() as usize;
        match LEASES.compare_exchange_weak(
            cur,
            cur | (1u64 << i),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return i,
            Err(now) => cur = now,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    thread_local! {
        static LEASE: Lease = const { Lease::new() };
    }

    fn current() -> usize {
        LEASE.with(Lease::index)
    }

    #[test]
    fn a_thread_keeps_its_lease_and_gives_it_back_on_exit() {
        let (mine, again) = std::thread::spawn(|| (current(), current()))
            .join()
            .expect("thread");
        assert_eq!(mine, again, "one index for the thread's life");
        // Threads one after another: if an exiting thread kept its index,
        // the pool would run dry after MAX_SHARDS of them.
        for n in 0..3 * MAX_SHARDS {
            let got = std::thread::spawn(current).join().expect("thread");
            assert!(got < MAX_SHARDS, "thread {n} found no free lease");
        }
    }

    #[test]
    fn shard_ix_names_exactly_the_lease_indices() {
        for i in 0..MAX_SHARDS {
            assert_eq!(ShardIx::new(i).map(ShardIx::get), Some(i));
        }
        for i in [MAX_SHARDS, UNSET, NO_SHARD] {
            assert_eq!(ShardIx::new(i), None, "{i} is no lease index");
        }
    }
}
