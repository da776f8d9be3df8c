//! The route catalog and the immutable table the hot path reads.
//!
//! Control-plane changes (register, remove, split, merge, coarsening) run under
//! one mutex, build a new [`RouteTable`] that shares every unchanged [`Slot`]
//! with the old one, and publish it with a single atomic swap. A slot's
//! metadata never changes after creation: a changed route gets a new slot and
//! the old one is retired, still drained by the next flushes, so counts that
//! raced with the change are harvested under the old identity.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use std::sync::OnceLock;

use super::capture::SlotCapture;
use super::counters::{MAX_SHARDS, ShardBlock, SlotCounters, WriteLanes};
use super::shard::ShardIx;
use super::subrange::SubLayout;
use super::window::UnknownCounts;
use crate::error::RouteError;
use crate::sync::{Arc, AtomicU32, AtomicU64, Mutex, Ordering};

/// Slot generations start at 1; 0 marks rows restored from a store.
static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `Slot::rows` value of a sub-range that has no row yet.
pub(crate) const NO_ROW: u32 = u32::MAX;

/// A route id as the host's catalog names it.
pub type RouteId = u64;

/// A route: the key range `[start, end)` served by one Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The host's route id; unique among registered routes.
    pub id: RouteId,
    /// First key of the range (inclusive); empty = the start of the key space.
    pub start: Vec<u8>,
    /// End of the range (exclusive); `None` = unbounded.
    pub end: Option<Vec<u8>>,
    /// Raft group serving the range (0 = unknown).
    pub group: u64,
}

impl RouteSpec {
    fn contains_end_after(&self, key: &[u8]) -> bool {
        self.end.as_deref().is_none_or(|e| e > key)
    }
}

/// What a slot counts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// One route, individually tracked.
    Route(RouteId),
    /// Several adjacent routes coarsened by the route budget.
    Virtual,
}

/// Immutable identity and range of a slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotMeta {
    pub(crate) kind: SlotKind,
    pub(crate) start: Vec<u8>,
    pub(crate) end: Option<Vec<u8>>,
    /// Member routes in key order (one for a route slot).
    pub(crate) members: Vec<RouteId>,
    /// The members' Raft group when they all share one, else 0.
    pub(crate) group: u64,
}

/// The counters of one route or virtual bucket.
///
/// `repr(C)` and line-aligned, the observe path's fields first: the write
/// lanes' identities (one line), then the counters, whose per-lease shard
/// pointers follow (16 bytes each, none straddling a line), then the
/// sub-range layout (read only by a sampler of several sub-ranges). The
/// fast path of a one-sub-range sampler does not read the slot at all: the
/// table's lease arrays lead to the thread's block, which carries its own
/// copy of the lanes ([`RouteTable::lease_block`]); with several sub-ranges
/// it reads the slot's layout and lease pointer.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    pub(crate) lanes: WriteLanes,
    pub(crate) counters: SlotCounters,
    pub(crate) layout: SubLayout,
    pub(crate) meta: SlotMeta,
    /// Creation order, unique per process; names the slot's rows.
    pub(crate) generation: u64,
    /// Decaying activity (operations), updated by flush; picks what to coarsen.
    pub(crate) activity: AtomicU64,
    /// Row id interned for each sub-range (`NO_ROW` until its first count, and
    /// again once the slot is released); touched under the history write lock
    /// only (publish), atomics just to stay `Sync` without a lock of their own.
    pub(crate) rows: Box<[AtomicU32]>,
    /// Hot-key captures of the open window: the *slot capture* mutex, taken by
    /// a captured observation and, briefly per slot, by seal.
    pub(crate) capture: Mutex<SlotCapture>,
    /// Sketches the slot's captures hold (mirrors `SlotCapture`, written under
    /// the capture mutex): lets a capture skip the lock when the budget is
    /// spent and the slot could record nothing.
    pub(crate) capture_held: std::sync::atomic::AtomicUsize,
}

impl Slot {
    fn new(meta: SlotMeta, k: u32, activity: u64) -> Slot {
        let layout = match meta.kind {
            SlotKind::Route(_) => SubLayout::new(&meta.start, meta.end.as_deref(), k),
            SlotKind::Virtual => SubLayout::single(),
        };
        let counters = SlotCounters::new(layout.count());
        let rows = (0..layout.count())
            .map(|_| AtomicU32::new(NO_ROW))
            .collect();
        Slot {
            meta,
            layout,
            counters,
            generation: NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            lanes: WriteLanes::default(),
            activity: AtomicU64::new(activity),
            rows,
            capture: Mutex::default(),
            capture_held: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A one-route slot of `subs` sub-ranges, for the loom model.
    #[cfg(all(test, loom))]
    pub(crate) fn for_test(subs: u32) -> Slot {
        Slot::new(
            SlotMeta {
                kind: SlotKind::Route(1),
                start: Vec::new(),
                end: None,
                members: vec![1],
                group: 1,
            },
            subs,
            0,
        )
    }

    fn activity(&self) -> u64 {
        // Ordering: Relaxed — a heuristic read, no data depends on it.
        self.activity.load(Ordering::Relaxed)
    }
}

/// The table the hot path reads: slots in key order and a route → slot index.
#[derive(Default)]
pub(crate) struct RouteTable {
    pub(crate) slots: Vec<Arc<Slot>>,
    /// The slot of each small route id (`None` = not registered): the slot
    /// itself rather than its index, so a hit reads one array, not two.
    /// Each entry is one more `Arc` of a slot of `slots`, dropped with the
    /// table, so a retired slot still becomes sole once no table holds it.
    dense: Box<[Option<Arc<Slot>>]>,
    pub(crate) by_route: FxHashMap<RouteId, u32>,
    /// Whether any id lies past `dense` (only then is the map probed).
    sparse: bool,
    /// Per lease index, indexed like `dense`: the lease's shard block in the
    /// slot of each route, once linked ([`link`](RouteTable::link)). The fast
    /// path goes route id → its own block in one step, without reading the
    /// slot (for 10 000 routes the slots and blocks are far over L2, and the
    /// slot's lease pointer was a dependent miss before the block's).
    /// Each as long as `dense` (16 bytes per entry and lease: 1.25 MiB for
    /// 10 000 routes numbered from 1), allocated with the table so the fast
    /// path tests no "allocated yet"; each entry set once, by whichever
    /// thread links it first: always to the block of `dense`'s slot for that
    /// route and that lease, so a block counted through here is the one the
    /// slot's drain reads.
    leases: [Box<[OnceLock<std::sync::Arc<ShardBlock>>]>; MAX_SHARDS],
    /// The sampler's per-lease unknown-route counts (shared with its
    /// `Windows` and every table it publishes): the fast path counts a miss
    /// through the table, so the sampler itself is dead after the stamp
    /// compare and the leaf needs no callee-saved register.
    unknown: UnknownCounts,
}

impl RouteTable {
    /// The table of `slots`, counting unknown routes into `unknown` (the
    /// sampler's, from [`Windows::unknown_counts`](super::window::Windows::unknown_counts)).
    pub(crate) fn new(slots: Vec<Arc<Slot>>, unknown: UnknownCounts) -> RouteTable {
        let mut by_route = FxHashMap::default();
        for (i, slot) in slots.iter().enumerate() {
            for &m in &slot.meta.members {
                by_route.insert(m, i as u32);
            }
        }
        // Hosts usually number routes densely from 0 or 1: then a plain array
        // indexed by route id replaces the hash probe on the hot path. Ids past
        // the array (sparse numbering) still resolve through the map.
        let dense_cap = by_route.len().saturating_mul(4).saturating_add(1024);
        let dense_len = by_route
            .keys()
            .filter(|&&id| id < dense_cap as u64)
            .max()
            .map_or(0, |&m| m as usize + 1);
        let mut dense: Vec<Option<Arc<Slot>>> = (0..dense_len).map(|_| None).collect();
        for (&id, &i) in &by_route {
            if let (Some(d), Some(slot)) = (dense.get_mut(id as usize), slots.get(i as usize)) {
                *d = Some(Arc::clone(slot));
            }
        }
        let sparse = by_route.keys().any(|&id| id >= dense_len as u64);
        let table = RouteTable {
            slots,
            dense: dense.into(),
            by_route,
            sparse,
            leases: std::array::from_fn(|_| (0..dense_len).map(|_| OnceLock::new()).collect()),
            unknown,
        };
        // Blocks promoted before this table: linked now, so a busy route
        // stays on the fast path across a catalog change. A block promoted
        // after this point is linked by the general path's first count.
        for (route, slot) in table.dense.iter().enumerate() {
            if let Some(slot) = slot {
                for lease in 0..MAX_SHARDS {
                    table.link(route as RouteId, lease, slot);
                }
            }
        }
        table
    }

    /// Links lease `lease`'s shard block in `slot`, the slot of `route` in
    /// this table, into the lease's array, so the fast path finds it
    /// ([`lease_block`](RouteTable::lease_block)). Nothing when the lease has
    /// no block in the slot, when the route lies past the dense array, or
    /// when the entry is already set. Never allocates (but the `Arc` count)
    /// and never blocks. Safe from any thread: each entry is a `OnceLock`,
    /// and every linker stores the same block.
    #[inline]
    pub(crate) fn link(&self, route: RouteId, lease: usize, slot: &Slot) {
        let Some(block) = slot.counters.shard_block(lease) else {
            return;
        };
        self.link_block(route, lease, block);
    }

    /// [`link`](RouteTable::link) of a block that exists: out of line, as it
    /// runs once per (route, lease) and table.
    #[cold]
    #[inline(never)]
    fn link_block(&self, route: RouteId, lease: usize, block: &std::sync::Arc<ShardBlock>) {
        let (Some(entries), Ok(r)) = (self.leases.get(lease), usize::try_from(route)) else {
            return;
        };
        if let Some(entry) = entries.get(r) {
            // Already set means set to this same block (see `leases`).
            let _ = entry.set(std::sync::Arc::clone(block));
        }
    }

    /// Lease `lease`'s shard block in the slot of `route`, once linked
    /// ([`Leased::Block`]); [`Leased::Unknown`] when no route `route` is
    /// registered; else [`Leased::Slow`] (its slot has no block of this
    /// lease, the block is not linked into this table yet, or the id lies
    /// past the dense array and some registered id does too). On a linked
    /// block: the lease's array (pointer and length) from the table and one
    /// entry; never reads the slot.
    #[inline(always)]
    pub(crate) fn lease_block(&self, lease: ShardIx, route: RouteId) -> Leased<'_> {
        let Ok(r) = usize::try_from(route) else {
            return Leased::Slow;
        };
        // Every lease array is as long as `dense`.
        match self.leases[lease.get()].get(r) {
            Some(entry) => match entry.get() {
                Some(block) => Leased::Block(block),
                None => self.unlinked(r),
            },
            None if self.sparse => Leased::Slow,
            None => Leased::Unknown,
        }
    }

    /// Counts one observation of an unregistered route by the holder of
    /// lease `lease`: a load and a store (only the holder writes its count).
    #[inline(always)]
    pub(crate) fn note_unknown(&self, lease: ShardIx) {
        let c = &self.unknown[lease.get()].0;
        // Ordering: Relaxed — a statistic, written by the lease holder only.
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// [`lease_block`](RouteTable::lease_block) of a route with no linked
    /// block: whether it is registered at all.
    #[inline(always)]
    fn unlinked(&self, r: usize) -> Leased<'_> {
        match self.dense.get(r) {
            Some(None) => Leased::Unknown,
            None if !self.sparse => Leased::Unknown,
            _ => Leased::Slow,
        }
    }

    /// The slot counting `route`, if any.
    #[inline(always)]
    pub(crate) fn slot(&self, route: RouteId) -> Option<&Arc<Slot>> {
        match usize::try_from(route).ok().and_then(|r| self.dense.get(r)) {
            Some(slot) => slot.as_ref(),
            None if !self.sparse => None,
            None => self.sparse_slot(route),
        }
    }

    /// [`slot`](RouteTable::slot) without the hash probe: `Err` when
    /// `route` lies past the dense array and some registered id does too
    /// (ask [`slot`](RouteTable::slot)).
    #[inline(always)]
    pub(crate) fn dense_slot(&self, route: RouteId) -> Result<Option<&Arc<Slot>>, ()> {
        match usize::try_from(route).ok().and_then(|r| self.dense.get(r)) {
            Some(slot) => Ok(slot.as_ref()),
            None if !self.sparse => Ok(None),
            None => Err(()),
        }
    }

    /// [`slot`](RouteTable::slot) of an id past the dense array: a hash
    /// probe, out of line so the dense lookup inlined into observe stays small.
    #[inline(never)]
    fn sparse_slot(&self, route: RouteId) -> Option<&Arc<Slot>> {
        self.slots.get(*self.by_route.get(&route)? as usize)
    }
}

/// What [`RouteTable::lease_block`] found for a route.
pub(crate) enum Leased<'a> {
    /// The thread's own shard block in the route's slot.
    Block(&'a ShardBlock),
    /// No such route is registered.
    Unknown,
    /// Ask the general path.
    Slow,
}

// By hand: loom's `Arc` (under `cfg(loom)`) has no `Debug`.
impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("slots", &self.slots.len())
            .field("routes", &self.by_route.len())
            .finish_non_exhaustive()
    }
}

/// Control-plane state: the registered routes and the published grouping.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Registered routes by start key.
    routes: BTreeMap<Vec<u8>, RouteSpec>,
    /// Route id → start key.
    starts: FxHashMap<RouteId, Vec<u8>>,
}

/// Limits the catalog applies when it builds slots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CatalogLimits {
    pub(crate) max_slots: usize,
    pub(crate) key_buckets: u32,
}

impl Catalog {
    fn spec(&self, id: RouteId) -> Result<&RouteSpec, RouteError> {
        self.starts
            .get(&id)
            .and_then(|s| self.routes.get(s))
            .ok_or(RouteError::UnknownRoute(id))
    }

    fn check_free(&self, spec: &RouteSpec, ignore: &[RouteId]) -> Result<(), RouteError> {
        if let Some(end) = &spec.end
            && end.as_slice() <= spec.start.as_slice()
        {
            return Err(RouteError::EmptyRange { id: spec.id });
        }
        let below = self.routes.range(..=spec.start.clone()).next_back();
        if let Some((_, other)) = below
            && !ignore.contains(&other.id)
            && other.contains_end_after(&spec.start)
        {
            return Err(RouteError::Overlap {
                id: spec.id,
                other: other.id,
            });
        }
        let above = self
            .routes
            .range((
                std::ops::Bound::Excluded(spec.start.clone()),
                std::ops::Bound::Unbounded,
            ))
            .find(|(_, r)| !ignore.contains(&r.id));
        if let Some((_, other)) = above
            && spec.contains_end_after(&other.start)
        {
            return Err(RouteError::Overlap {
                id: spec.id,
                other: other.id,
            });
        }
        Ok(())
    }

    fn insert(&mut self, spec: RouteSpec) {
        self.starts.insert(spec.id, spec.start.clone());
        self.routes.insert(spec.start.clone(), spec);
    }

    fn delete(&mut self, id: RouteId) -> Option<RouteSpec> {
        let start = self.starts.remove(&id)?;
        self.routes.remove(&start)
    }

    /// A slot for `members` (key order): a route slot for one, virtual otherwise.
    fn build_slot(&self, members: &[RouteId], limits: CatalogLimits, activity: u64) -> Arc<Slot> {
        let specs: Vec<&RouteSpec> = members.iter().filter_map(|m| self.spec(*m).ok()).collect();
        let (first, last) = match (specs.first(), specs.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => {
                return Arc::new(Slot::new(
                    SlotMeta {
                        kind: SlotKind::Virtual,
                        start: Vec::new(),
                        end: None,
                        members: Vec::new(),
                        group: 0,
                    },
                    1,
                    activity,
                ));
            }
        };
        let group = if specs.iter().all(|s| s.group == first.group) {
            first.group
        } else {
            0
        };
        let kind = if specs.len() == 1 {
            SlotKind::Route(first.id)
        } else {
            SlotKind::Virtual
        };
        Arc::new(Slot::new(
            SlotMeta {
                kind,
                start: first.start.clone(),
                end: last.end.clone(),
                members: specs.iter().map(|s| s.id).collect(),
                group,
            },
            limits.key_buckets,
            activity,
        ))
    }
}

/// The outcome of a control-plane change: the new table and the slots it retired.
pub(crate) struct Change {
    pub(crate) table: RouteTable,
    pub(crate) retired: Vec<Arc<Slot>>,
}

/// Applies catalog changes to tables.
pub(crate) struct Planner<'a> {
    pub(crate) catalog: &'a mut Catalog,
    pub(crate) current: &'a RouteTable,
    pub(crate) limits: CatalogLimits,
}

impl Planner<'_> {
    /// Registers a new route as its own slot, then coarsens if over the budget.
    pub(crate) fn register(self, spec: RouteSpec) -> Result<Change, RouteError> {
        if self.catalog.starts.contains_key(&spec.id) {
            return Err(RouteError::AlreadyRegistered(spec.id));
        }
        self.catalog.check_free(&spec, &[])?;
        let id = spec.id;
        self.catalog.insert(spec);
        let slot = self.catalog.build_slot(&[id], self.limits, 0);
        let mut slots = self.current.slots.clone();
        let pos = slots.partition_point(|s| s.meta.start < slot.meta.start);
        slots.insert(pos, slot);
        Ok(self.finish(slots, Vec::new()))
    }

    /// Registers every spec of `specs` as its own slot, then coarsens once:
    /// all or nothing (on the first refused spec the catalog is left as it
    /// was). Specs are checked against the registered routes and against the
    /// batch's earlier specs.
    pub(crate) fn register_batch(self, specs: Vec<RouteSpec>) -> Result<Change, RouteError> {
        let mut added: Vec<RouteId> = Vec::with_capacity(specs.len());
        let mut failed = None;
        for spec in specs {
            let check = if self.catalog.starts.contains_key(&spec.id) {
                Err(RouteError::AlreadyRegistered(spec.id))
            } else {
                self.catalog.check_free(&spec, &[])
            };
            if let Err(e) = check {
                failed = Some(e);
                break;
            }
            added.push(spec.id);
            self.catalog.insert(spec);
        }
        if let Some(e) = failed {
            for id in added {
                self.catalog.delete(id);
            }
            return Err(e);
        }
        let mut new: Vec<Arc<Slot>> = added
            .iter()
            .map(|id| self.catalog.build_slot(&[*id], self.limits, 0))
            .collect();
        new.sort_by(|a, b| a.meta.start.cmp(&b.meta.start));
        // One merge of two key-ordered lists (routes never overlap).
        let mut slots = Vec::with_capacity(self.current.slots.len() + new.len());
        let mut old = self.current.slots.iter().cloned().peekable();
        for slot in new {
            while let Some(o) = old.next_if(|o| o.meta.start < slot.meta.start) {
                slots.push(o);
            }
            slots.push(slot);
        }
        slots.extend(old);
        Ok(self.finish(slots, Vec::new()))
    }

    /// Removes a route; its slot is retired, or its virtual bucket rebuilt
    /// without it.
    pub(crate) fn remove(self, id: RouteId) -> Result<Change, RouteError> {
        self.catalog.spec(id)?;
        let i = self.slot_index(id)?;
        self.catalog.delete(id);
        let old = &self.current.slots[i];
        let members: Vec<RouteId> = old
            .meta
            .members
            .iter()
            .copied()
            .filter(|m| *m != id)
            .collect();
        let mut slots = self.current.slots.clone();
        let retired = vec![slots.remove(i)];
        if !members.is_empty() {
            let rebuilt = self
                .catalog
                .build_slot(&members, self.limits, old.activity());
            slots.insert(i, rebuilt);
        }
        Ok(self.finish(slots, retired))
    }

    /// Splits route `id` at `at` into `[start, at)` (keeps `id`) and
    /// `[at, end)` (`right_id`, same group).
    pub(crate) fn split(
        self,
        id: RouteId,
        at: &[u8],
        right_id: RouteId,
    ) -> Result<Change, RouteError> {
        let spec = self.catalog.spec(id)?.clone();
        if self.catalog.starts.contains_key(&right_id) {
            return Err(RouteError::AlreadyRegistered(right_id));
        }
        if at <= spec.start.as_slice() || !spec.contains_end_after(at) {
            return Err(RouteError::SplitKeyOutsideRange(id));
        }
        let i = self.slot_index(id)?;
        let right = RouteSpec {
            id: right_id,
            start: at.to_vec(),
            end: spec.end.clone(),
            group: spec.group,
        };
        self.catalog.delete(id);
        self.catalog.insert(RouteSpec {
            end: Some(at.to_vec()),
            ..spec
        });
        self.catalog.insert(right);
        let old = Arc::clone(&self.current.slots[i]);
        let mut slots = self.current.slots.clone();
        slots.remove(i);
        let half = old.activity() / 2;
        if old.meta.members.len() == 1 {
            slots.insert(i, self.catalog.build_slot(&[id], self.limits, half));
            slots.insert(
                i + 1,
                self.catalog.build_slot(&[right_id], self.limits, half),
            );
        } else {
            let mut members = old.meta.members.clone();
            let p = members
                .iter()
                .position(|m| *m == id)
                .unwrap_or(members.len());
            members.insert((p + 1).min(members.len()), right_id);
            slots.insert(
                i,
                self.catalog
                    .build_slot(&members, self.limits, old.activity()),
            );
        }
        Ok(self.finish(slots, vec![old]))
    }

    /// Merges adjacent routes: `left` grows to cover `right`, which disappears.
    pub(crate) fn merge(self, left: RouteId, right: RouteId) -> Result<Change, RouteError> {
        let l = self.catalog.spec(left)?.clone();
        let r = self.catalog.spec(right)?.clone();
        if l.end.as_deref() != Some(r.start.as_slice()) {
            return Err(RouteError::NotAdjacent { left, right });
        }
        let li = self.slot_index(left)?;
        let ri = self.slot_index(right)?;
        self.catalog.delete(right);
        self.catalog.delete(left);
        self.catalog.insert(RouteSpec { end: r.end, ..l });
        let mut members: Vec<RouteId> = self.current.slots[li].meta.members.clone();
        if ri != li {
            members.extend(self.current.slots[ri].meta.members.iter().copied());
        }
        members.retain(|m| *m != right);
        let activity = self.current.slots[li]
            .activity()
            .saturating_add(if ri != li {
                self.current.slots[ri].activity()
            } else {
                0
            });
        let mut slots = self.current.slots.clone();
        let (lo, hi) = (li.min(ri), li.max(ri));
        let mut retired = vec![slots.remove(hi)];
        if lo != hi {
            retired.push(slots.remove(lo));
        }
        slots.insert(lo, self.catalog.build_slot(&members, self.limits, activity));
        Ok(self.finish(slots, retired))
    }

    fn slot_index(&self, id: RouteId) -> Result<usize, RouteError> {
        self.current
            .by_route
            .get(&id)
            .map(|i| *i as usize)
            .ok_or(RouteError::UnknownRoute(id))
    }

    /// Coarsens least-active adjacent pairs until the slot budget fits, then
    /// builds the table.
    fn finish(self, mut slots: Vec<Arc<Slot>>, mut retired: Vec<Arc<Slot>>) -> Change {
        while slots.len() > self.limits.max_slots && slots.len() >= 2 {
            // Least active pair first; on ties (all quiet at start-up) the pair
            // with fewer members, so coarsening spreads instead of piling every
            // new route into one leftmost bucket.
            let Some(i) = (0..slots.len() - 1).min_by_key(|&i| {
                (
                    slots[i].activity().saturating_add(slots[i + 1].activity()),
                    slots[i].meta.members.len() + slots[i + 1].meta.members.len(),
                    i,
                )
            }) else {
                break;
            };
            let right = slots.remove(i + 1);
            let left = slots.remove(i);
            let members: Vec<RouteId> = left
                .meta
                .members
                .iter()
                .chain(right.meta.members.iter())
                .copied()
                .collect();
            let activity = left.activity().saturating_add(right.activity());
            slots.insert(i, self.catalog.build_slot(&members, self.limits, activity));
            retired.push(left);
            retired.push(right);
        }
        // A slot built and retired within this one change never reached the hot
        // path; keep only slots that were in the published table.
        if !retired.is_empty() {
            let published: rustc_hash::FxHashSet<*const Slot> =
                self.current.slots.iter().map(Arc::as_ptr).collect();
            retired.retain(|s| published.contains(&Arc::as_ptr(s)));
        }
        Change {
            table: RouteTable::new(slots, std::sync::Arc::clone(&self.current.unknown)),
            retired,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_slots_write_lanes_fill_one_line_and_no_lease_pointer_straddles_two() {
        // Under loom the atomics are bigger; the layout is the std build's.
        assert_eq!(std::mem::align_of::<Slot>(), 64);
        assert_eq!(std::mem::offset_of!(Slot, lanes), 0);
        let shards = std::mem::offset_of!(Slot, counters) + SlotCounters::shards_offset();
        let entry = SlotCounters::shard_entry_size();
        assert_eq!(entry, 16);
        for lease in 0..super::super::counters::MAX_SHARDS {
            let at = shards + lease * entry;
            assert_eq!(
                at / 64,
                (at + entry - 1) / 64,
                "lease {lease}'s entry at {at}"
            );
        }
    }
}
