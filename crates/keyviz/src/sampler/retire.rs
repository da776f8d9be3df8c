//! Retired slots: queued by catalog changes, drained and finally released by seal.
//!
//! A catalog change (register, remove, split, merge, coarsening) publishes a new
//! route table and hands the slots it replaced to [`RetireQueue::push`], which
//! takes only the queue's own small mutex: a change never waits for a seal, a
//! publish, the history lock or a query. Seal moves the queue into its own list
//! ([`RetireQueue::take`]) and [`sweep`]s it.
//!
//! A retired slot may be released (its rows given back) only when nothing can
//! still add to it: no published table and no thread's cached table holds it.
//! An observer descheduled mid-call holds its table, hence the slot, so the
//! sweep checks that the slot's `Arc` is the last one and only then, after an
//! `Acquire` fence that pairs with the `Release` decrement of the last other
//! `Arc`, drains it for the final time. The `Arc`, the fence and the mutex all
//! come from [`crate::sync`], so the loom model below checks this protocol.

use super::route_table::Slot;
use crate::sync::{Arc, Mutex, Ordering, fence};

/// Seals a retired slot is at least drained after it left the table; it is
/// kept longer while any thread may still hold it.
pub(crate) const RETIRED_DRAINS: u8 = 2;

/// Slots retired by catalog changes and not yet taken by a seal.
#[derive(Debug, Default)]
pub(crate) struct RetireQueue {
    queue: Mutex<Vec<Arc<Slot>>>,
}

impl RetireQueue {
    /// Queues slots that just left the published table. Takes only the queue lock.
    pub(crate) fn push(&self, slots: Vec<Arc<Slot>>) {
        if slots.is_empty() {
            return;
        }
        self.queue.lock().extend(slots);
    }

    /// Everything queued so far, oldest first.
    pub(crate) fn take(&self) -> Vec<Arc<Slot>> {
        std::mem::take(&mut *self.queue.lock())
    }
}

/// A retired slot owned by the seal side.
pub(crate) struct Retired {
    pub(crate) slot: Arc<Slot>,
    drains_left: u8,
}

impl Retired {
    pub(crate) fn new(slot: Arc<Slot>) -> Retired {
        Retired {
            slot,
            drains_left: RETIRED_DRAINS,
        }
    }
}

/// Drains every retired slot once (`drain`) and hands the ones that can no
/// longer be observed to `release`, removing them from `retired`.
///
/// Caller holds the seal lock (the only owner of `retired`).
pub(crate) fn sweep(
    retired: &mut Vec<Retired>,
    mut drain: impl FnMut(&Arc<Slot>),
    mut release: impl FnMut(Arc<Slot>),
) {
    let mut kept = Vec::with_capacity(retired.len());
    for mut r in retired.drain(..) {
        let sole = Arc::strong_count(&r.slot) == 1;
        // Ordering: Acquire pairs with the Release decrement of the last other
        // `Arc` (dropped by the observer's table), so every increment that
        // holder made is visible to the drain below.
        fence(Ordering::Acquire);
        drain(&r.slot);
        r.drains_left = r.drains_left.saturating_sub(1);
        if r.drains_left == 0 && sole {
            release(r.slot);
        } else {
            kept.push(r);
        }
    }
    *retired = kept;
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{AtomicU64, Ordering};

    /// An observer counting on a slot through its table while a catalog change
    /// retires the slot and a seal sweeps: every count is drained before the
    /// slot is released, exactly once.
    #[test]
    fn loom_observe_retire_seal_counts_once_before_release() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let slot = Arc::new(Slot::for_test(1));
            // The observer's cached table holds the slot.
            let table = Arc::clone(&slot);
            let queue = Arc::new(RetireQueue::default());
            let drained = Arc::new(AtomicU64::new(0));

            let observer = loom::thread::spawn(move || {
                table
                    .counters
                    .add_write(super::super::shard::NO_SHARD, 0, 0, 3, false);
                drop(table);
            });
            let q2 = Arc::clone(&queue);
            let retirer = loom::thread::spawn(move || {
                // The change replaced the published table: its `Arc` moves here.
                q2.push(vec![slot]);
            });

            let mut retired: Vec<Retired> = Vec::new();
            let mut released = false;
            let seal = |retired: &mut Vec<Retired>, released: &mut bool| {
                retired.extend(queue.take().into_iter().map(Retired::new));
                sweep(
                    retired,
                    |s| {
                        let d = s.counters.drain(0);
                        drained.fetch_add(d.writes[0], Ordering::Relaxed);
                    },
                    |s| {
                        assert_eq!(
                            drained.load(Ordering::Relaxed),
                            1,
                            "released before the observer's count was drained"
                        );
                        drop(s);
                        *released = true;
                    },
                );
            };
            // Enough seals while the observer may still run for the slot to
            // reach the end of its drains: only the `Arc` check keeps it.
            for _ in 0..RETIRED_DRAINS {
                seal(&mut retired, &mut released);
            }
            observer.join().expect("observer");
            retirer.join().expect("retirer");
            for _ in 0..RETIRED_DRAINS + 1 {
                seal(&mut retired, &mut released);
            }
            assert!(released, "a slot nobody holds is released");
            assert_eq!(drained.load(Ordering::Relaxed), 1, "counted exactly once");
        });
    }
}
