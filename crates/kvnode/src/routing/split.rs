//! Runtime splits, replicated through the owning group's Raft log.
//!
//! Why the owning group and not a metadata group: the split and the writes to the route are then
//! ordered in one log, every replica applies the split at the same log index, and no extra Raft
//! group is needed. The new route id is derived deterministically from where the split landed
//! in the log, `right_id = group << 32 | log_index`, so every replica picks the same id without
//! coordination and ids never collide (initial routes use `1..2^32`, log indexes start at 1).

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Catalog, CatalogError, Route};
use crate::sampling::Sampling;

/// The id of the route created by a split applied at `log_index` in `group`.
pub(crate) fn right_route_id(group: u64, log_index: u64) -> u64 {
    (group << 32) | (log_index & 0xFFFF_FFFF)
}

/// The node's live catalog: lock-free-ish reads of an immutable snapshot, serialised changes.
///
/// Every change registers the new routes with the sampler *before* the new catalog becomes
/// visible to dispatch, so no observation ever names a route the sampler does not know.
pub(crate) struct SharedCatalog {
    current: RwLock<Arc<Catalog>>,
    writer: Mutex<()>,
    sampling: Sampling,
}

impl SharedCatalog {
    pub(crate) fn new(initial: Catalog, sampling: Sampling) -> Self {
        sampling.register_all(initial.routes());
        Self {
            current: RwLock::new(Arc::new(initial)),
            writer: Mutex::new(()),
            sampling,
        }
    }

    /// The current catalog (an `Arc` clone; never blocks for long).
    pub(crate) fn load(&self) -> Arc<Catalog> {
        self.current.read().clone()
    }

    /// Applies a split; `persist` runs with the new catalog while changes are serialised, so
    /// the on-disk catalog is written in the same order as the in-memory one.
    pub(crate) fn split<E>(
        &self,
        route: u64,
        at: &[u8],
        right_id: u64,
        persist: impl FnOnce(&Catalog) -> Result<(), E>,
    ) -> Result<Result<Route, CatalogError>, E> {
        let _serial = self.writer.lock();
        let mut next = (*self.load()).clone();
        let right = match next.split(route, at, right_id) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        persist(&next)?;
        self.sampling.split(route, at, right_id);
        *self.current.write() = Arc::new(next);
        Ok(Ok(right))
    }

    /// Replaces a group's routes (snapshot install); registers added routes and unregisters
    /// removed ones.
    pub(crate) fn replace_group<E>(
        &self,
        group: u64,
        routes: Vec<Route>,
        persist: impl FnOnce(&Catalog) -> Result<(), E>,
    ) -> Result<(), E> {
        let _serial = self.writer.lock();
        let old = self.load();
        let mut next = (*old).clone();
        next.replace_group(group, routes);
        persist(&next)?;
        let changed: Vec<&Route> = next
            .routes_of(group)
            .filter(|r| old.route(r.id) != Some(*r))
            .collect();
        // Every route that left or changed goes first, so the new ranges register in one
        // batch without overlapping a range on its way out.
        for r in old.routes_of(group) {
            if next.route(r.id).is_none() {
                self.sampling.remove(r.id);
            }
        }
        for r in &changed {
            self.sampling.remove(r.id);
        }
        self.sampling.register_all(changed);
        *self.current.write() = Arc::new(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Layout;

    #[test]
    fn right_ids_are_unique_per_group_and_index_and_above_initial_ids() {
        assert_ne!(right_route_id(1, 5), right_route_id(2, 5));
        assert_ne!(right_route_id(1, 5), right_route_id(1, 6));
        assert!(right_route_id(1, 1) > u32::MAX as u64);
    }

    #[test]
    fn failed_persist_leaves_catalog_unchanged() {
        let c = Catalog::from_layout(&Layout::even(1)).expect("layout");
        let shared = SharedCatalog::new(c.clone(), Sampling::disabled());
        let r: Result<_, &str> = shared.split(1, b"m", 99, |_| Err("disk"));
        assert_eq!(r, Err("disk"));
        assert_eq!(*shared.load(), c);
        let ok: Result<_, &str> = shared.split(1, b"m", 99, |_| Ok(()));
        assert_eq!(ok.expect("persist").expect("split").id, 99);
        assert_eq!(shared.load().route_for(b"n").id, 99);
    }
}
