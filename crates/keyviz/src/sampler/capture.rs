//! Hot-key capture: what the observe path does with an operation its counter
//! chose ([`capture_stride`](super::counters::capture_stride)), and how seal
//! turns a window's captures into summaries.
//!
//! Captured operations go, under the slot's capture mutex, into lazily
//! allocated [`CaptureSketch`]es per sub-range and series family: reads (ops
//! and bytes, leader and follower reads together) and, per write lane, writes
//! (ops and bytes), so each write summary keeps its (group, term). The key goes
//! in as [`KeyRedactor::capture_form`] gives it (the key cut at 256 bytes; in
//! off mode nothing is captured); in hashed mode seal turns the kept keys into
//! their HMAC forms ([`KeyRedactor::seal_form`]), so raw keys are held only in
//! memory: in the sketch of the open window, and in the redactor's bounded
//! seal-form cache (at most 4 096 recently sealed keys, so a key hot across
//! windows is hashed once); never in a summary, the history or the store.
//!
//! Memory: at most [`SamplerConfig::hot_key_sketches`](crate::SamplerConfig::hot_key_sketches)
//! sketches exist at once, sampler-wide. Past that, a capture that would need
//! a new sketch is not recorded (counted in
//! [`SamplerStats::uncaptured_observations`](crate::SamplerStats::uncaptured_observations)):
//! its operation stays in the exact totals and the summary's uncaptured-weight
//! rule widens the bounds, so no bound lies. A sketch idle for a whole window
//! is freed at seal; one in use is cleared and reused. After a window in which
//! the budget ran out, seal also frees the sketches of families with fewer
//! than 1 024 operations, so the rows that merely stay active do not starve a
//! row that just became hot.

use std::cell::RefCell;

use crate::hotkeys::CaptureSketch;
use crate::hotkeys::{HotSummary, KeyRedactor, MAX_HOT_KEY_BYTES};
use crate::matrix::Series;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::route_table::Slot;

use super::counters::{Drained, UNKNOWN_LANE};
use crate::history::{CELL_HOT_K, CellHot};

/// Entries a capture sketch tracks (Space-Saving counters).
pub(crate) const SKETCH_CAPACITY: usize = 32;

/// Series families one sub-range captures: reads ops, reads bytes, then
/// (writes ops, write bytes) per write lane.
const FAMILIES: usize = 2 + 2 * (UNKNOWN_LANE + 1);

/// Family index of the ops sketch of reads (`+ 1`: bytes).
pub(crate) const READS: usize = 0;

/// Family index of the ops sketch of writes in `lane` (`+ 1`: bytes).
#[inline]
pub(crate) fn writes_family(lane: usize) -> usize {
    2 + 2 * lane.min(UNKNOWN_LANE)
}

/// Sampler-wide capture settings and the sketch budget.
#[derive(Debug)]
pub(crate) struct Capture {
    pub(crate) redactor: KeyRedactor,
    /// False in off mode: the observe path skips capture altogether.
    pub(crate) on: bool,
    max_sketches: usize,
    live: AtomicUsize,
    /// Captures not recorded because the sketch budget was spent.
    pub(crate) uncaptured: AtomicU64,
    /// The budget ran out since the last seal (seal swaps it back).
    pressure: AtomicBool,
}

impl Capture {
    pub(crate) fn new(redactor: KeyRedactor, max_sketches: usize) -> Capture {
        Capture {
            on: redactor.mode() != crate::hotkeys::HotKeyMode::Off && max_sketches > 0,
            redactor,
            max_sketches,
            live: AtomicUsize::new(0),
            uncaptured: AtomicU64::new(0),
            pressure: AtomicBool::new(false),
        }
    }

    /// Sketches allocated now.
    pub(crate) fn live(&self) -> usize {
        // Ordering: Relaxed — a budget and a statistic; no data is published through it.
        self.live.load(Ordering::Relaxed)
    }

    /// Operations below which a family's sketch is freed at this seal:
    /// 1 024 (a counter's exact-capture span) after a window in which the
    /// budget ran out, else 0. Called once per seal.
    pub(crate) fn evict_below(&self) -> u64 {
        // Ordering: Relaxed — a heuristic; a capture racing the swap only
        // shifts the eviction by one window.
        if self.pressure.swap(false, Ordering::Relaxed) {
            2 << super::counters::EXACT_CAPTURE_SHIFT
        } else {
            0
        }
    }

    /// Takes `n` sketches from the budget, all or none.
    fn reserve(&self, n: usize) -> bool {
        // Ordering: Relaxed — see `live`; a CAS loop keeps the cap exact.
        let mut cur = self.live.load(Ordering::Relaxed);
        loop {
            if cur + n > self.max_sketches {
                return false;
            }
            match self.live.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn release(&self, n: usize) {
        if n > 0 {
            // Ordering: Relaxed — see `live`.
            self.live.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// The captures of one sub-range in the open window.
#[derive(Debug, Default)]
struct SubCapture {
    sketches: [Option<CaptureSketch>; FAMILIES],
    /// Smallest and largest captured key label of the window.
    first: Option<Vec<u8>>,
    last: Option<Vec<u8>>,
}

/// A slot's captures, under the slot's capture mutex.
#[derive(Debug, Default)]
pub(crate) struct SlotCapture {
    subs: Vec<Option<Box<SubCapture>>>,
    sketches: usize,
    budget: Option<Arc<Capture>>,
}

impl Drop for SlotCapture {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.sketches);
        }
    }
}

/// What seal takes from one sub-range's captures.
#[derive(Debug, Default)]
pub(crate) struct Harvest {
    pub(crate) hot: Vec<CellHot>,
    pub(crate) labels: Option<(Vec<u8>, Vec<u8>)>,
}

thread_local! {
    /// The redacted key of the capture in progress: no allocation per capture.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Records one captured operation: `family` is [`READS`] or
/// [`writes_family`], `stride` its weight in operations, `bytes` its own
/// bytes. Tries the slot's capture mutex (nothing else) and never waits for it:
/// a contended capture is skipped and counted as uncaptured. Allocates a sketch
/// the first time a (sub-range, family) captures in a while.
#[cold]
#[inline(never)]
pub(crate) fn capture(
    shared: &Arc<Capture>,
    slot: &Slot,
    sub: usize,
    family: usize,
    key: &[u8],
    bytes: u64,
    stride: u64,
) {
    // Ordering: Relaxed — heuristics: a stale read only captures or skips
    // one more operation.
    if shared.live.load(Ordering::Relaxed) >= shared.max_sketches
        && slot.capture_held.load(Ordering::Relaxed) == 0
    {
        // The budget is spent and this slot holds no sketch: it could record
        // nothing, so skip the lock and the redaction (many quiet rows).
        shared.uncaptured.fetch_add(1, Ordering::Relaxed);
        if !shared.pressure.load(Ordering::Relaxed) {
            shared.pressure.store(true, Ordering::Relaxed);
        }
        return;
    }
    let run = |out: &mut Vec<u8>| {
        // Hashed mode hashes at seal, per kept summary key (`harvest`), not
        // per captured operation: the window's sketch holds the key itself.
        let Some(truncated) = shared.redactor.capture_form(key, out) else {
            return;
        };
        let label = shared.redactor.label(key);
        // Never wait on the observe path: when a seal is harvesting this slot or another
        // thread is capturing into it, this op is left uncaptured. It stays in the exact
        // count, and the summary adds every uncaptured op to its upper bounds and floor, so
        // the bounds stay honest; blocking here stalled whole connection tasks behind a seal.
        let Some(mut guard) = slot.capture.try_lock() else {
            // Ordering: Relaxed — a statistic.
            shared.uncaptured.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let sc = &mut *guard;
        if sc.subs.len() <= sub {
            sc.subs.resize_with(sub + 1, || None);
        }
        let Some(entry) = sc.subs.get_mut(sub) else {
            return;
        };
        let state = entry.get_or_insert_with(Box::default);
        if let Some(label) = label {
            let label = &label[..label.len().min(MAX_HOT_KEY_BYTES)];
            // An empty label (hashed mode, a key without a kept prefix: the
            // common case there) is decided without a `memcmp` call: it is
            // below every non-empty label and above none. Profiled: those
            // calls were most of hashed mode's cost over raw on this path.
            let below = |f: &[u8]| {
                if label.is_empty() {
                    !f.is_empty()
                } else {
                    label < f
                }
            };
            let above = |l: &[u8]| !label.is_empty() && label > l;
            // Buffers are reused: a label only allocates to grow.
            if state.first.as_deref().is_none_or(below) {
                let f = state.first.get_or_insert_with(Vec::new);
                f.clear();
                f.extend_from_slice(label);
            }
            if state.last.as_deref().is_none_or(above) {
                let l = state.last.get_or_insert_with(Vec::new);
                l.clear();
                l.extend_from_slice(label);
            }
        }
        let weights = [stride, bytes.saturating_mul(stride)];
        for (i, weight) in weights.into_iter().enumerate() {
            let Some(cell) = state.sketches.get_mut(family + i) else {
                return;
            };
            if cell.is_none() {
                if !shared.reserve(1) {
                    // Ordering: Relaxed — a statistic.
                    shared.uncaptured.fetch_add(1, Ordering::Relaxed);
                    shared.pressure.store(true, Ordering::Relaxed);
                    continue;
                }
                sc.sketches += 1;
                // Ordering: Relaxed — see the skip above.
                slot.capture_held.store(sc.sketches, Ordering::Relaxed);
                if sc.budget.is_none() {
                    sc.budget = Some(Arc::clone(shared));
                }
                *cell = Some(CaptureSketch::new(SKETCH_CAPACITY));
            }
            if let Some(sketch) = cell.as_mut() {
                sketch.insert(out, truncated, weight, stride);
            }
        }
    };
    let ran = SCRATCH.try_with(|cell| match cell.try_borrow_mut() {
        Ok(mut out) => run(&mut out),
        Err(_) => run(&mut Vec::new()),
    });
    if ran.is_err() {
        run(&mut Vec::new());
    }
}

/// Replaces each kept key of `summary` by its shown form (hashed mode), and
/// restores the summary's order (estimate descending, then key ascending).
fn seal_forms(redactor: &KeyRedactor, summary: &mut HotSummary) {
    let mut out = Vec::new();
    for item in &mut summary.items {
        redactor.seal_form(&item.key, &mut out);
        std::mem::swap(&mut item.key, &mut out);
    }
    summary
        .items
        .sort_by(|a, b| b.estimate.cmp(&a.estimate).then_with(|| a.key.cmp(&b.key)));
}

impl SlotCapture {
    /// At seal, after sub-range `sub` drained `drained`: each family with
    /// traffic becomes a summary (exact total from the counters, trimmed to
    /// [`CELL_HOT_K`]) and its sketch is cleared for the next window; a sketch
    /// of a family without traffic is freed, and so is one of a family with
    /// fewer than `evict_below` operations (the sampler passes a non-zero
    /// value after a window in which the sketch budget ran out, so a newly
    /// hot row is not starved by rows that merely stay active).
    /// `identity(lane)` names a lane.
    pub(crate) fn harvest(
        &mut self,
        sub: usize,
        drained: &Drained,
        identity: impl Fn(usize) -> (u64, u64),
        evict_below: u64,
        held: &AtomicUsize,
    ) -> Harvest {
        let mut out = Harvest::default();
        let Some(Some(state)) = self.subs.get_mut(sub) else {
            return out;
        };
        if let (Some(f), Some(l)) = (state.first.take(), state.last.take()) {
            out.labels = Some((f, l));
        }
        let mut freed = 0;
        for family in (0..FAMILIES).step_by(2) {
            let (series, exact_ops, exact_bytes, (group, term)) = if family == READS {
                (
                    (Series::Reads, Series::ReadBytes),
                    drained.reads_leader.saturating_add(drained.reads_follower),
                    drained.read_bytes,
                    (0, 0),
                )
            } else {
                let lane = (family - 2) / 2;
                (
                    (Series::Writes, Series::WriteBytes),
                    drained.writes[lane],
                    drained.write_bytes[lane],
                    identity(lane),
                )
            };
            for (f, s, exact) in [
                (family, series.0, exact_ops),
                (family + 1, series.1, exact_bytes),
            ] {
                let Some(slot) = state.sketches.get_mut(f) else {
                    continue;
                };
                let Some(sketch) = slot.as_mut() else {
                    continue;
                };
                if exact == 0 {
                    if sketch.is_empty() {
                        *slot = None;
                        freed += 1;
                    } else {
                        // Captured after the drain (racing the seal): its
                        // operation is counted in the next window.
                        // Keep it for that window's summary.
                    }
                    continue;
                }
                let mut summary: HotSummary = sketch.summary(exact);
                summary.trim(CELL_HOT_K);
                if let Some(b) = &self.budget
                    && b.redactor.defers()
                {
                    seal_forms(&b.redactor, &mut summary);
                }
                if exact_ops < evict_below {
                    // The budget ran out this window: quiet families give
                    // their sketches back so a busier row can take them.
                    *slot = None;
                    freed += 1;
                } else {
                    sketch.clear();
                }
                if !summary.items.is_empty() {
                    out.hot.push(CellHot {
                        series: s,
                        group,
                        term,
                        summary,
                    });
                }
            }
        }
        if freed > 0 {
            self.sketches = self.sketches.saturating_sub(freed);
            // Ordering: Relaxed — a heuristic for the observe path's skip.
            held.store(self.sketches, Ordering::Relaxed);
            if let Some(b) = &self.budget {
                b.release(freed);
            }
        }
        if state.sketches.iter().all(Option::is_none) && state.first.is_none() {
            self.subs[sub] = None;
        }
        out
    }
}
