//! The capture sketch: weighted Space-Saving over the operations the sampler
//! captured for one (row, series, write identity) in one window.
//!
//! Space-Saving (Metwally, Agrawal, El Abbadi 2005) keeps `capacity`
//! counters. A captured key that already has a counter adds its weight; a new
//! key takes the counter with the smallest count `m`, inherits `m` as its
//! over-count and adds its weight. For every monitored key the true
//! (captured) weight then lies in `[count - err, count]`, any unmonitored key
//! has at most `m`, and every key heavier than `total / capacity` is
//! monitored.
//!
//! Layout, chosen for the capture path (see the "Hot-key sketch" section of
//! `docs/PERFORMANCE.md` for the measurements):
//! - the key is hashed once per insert; a small open-addressing table
//!   (linear probing, backward-shift deletion) maps the hash to a counter;
//! - a binary min-heap over counter indices tracks the smallest count, so an
//!   eviction is `O(log capacity)` and an increment is a short sift-down;
//! - counters and their key buffers are reused across evictions and across
//!   [`CaptureSketch::clear`], so a warm sketch allocates only when a new key
//!   is longer than the buffer of the slot it takes (and never beyond
//!   [`MAX_HOT_KEY_BYTES`]).
//!
//! Sampled captures (stride > 1) widen the bounds: see
//! [`CaptureSketch::summary`] and `docs/CORE_API.md`.

use std::hash::Hasher as _;

use super::summary::{HotItem, HotSummary, MAX_HOT_KEY_BYTES};

/// Most counters one sketch keeps; larger requested capacities are cut to
/// this (counter indices are `u16`, and a bigger per-row sketch would cost
/// more memory than a row is worth).
pub(crate) const MAX_CAPTURE_CAPACITY: usize = 1_024;

/// An unused index entry (no counter has index `0xffff`: capacity <= 1024).
const EMPTY: u32 = u32::MAX;

/// One monitored key. Its count lives in `CaptureSketch::counts`, so the
/// search for the smallest count scans contiguous words.
#[derive(Debug, Clone)]
struct Counter {
    /// The captured (already redacted) key, at most `MAX_HOT_KEY_BYTES`.
    key: Vec<u8>,
    /// The key's hash, kept so probing and deletion never rehash a key.
    hash: u32,
    /// Over-count inherited when this key took the counter.
    err: u64,
    /// Sum of `weight / stride` of this key's own captures: real operations
    /// (ops series) or bytes (bytes series) that certainly belong to it.
    seen: u64,
    /// Some capture of the key was cut at `MAX_HOT_KEY_BYTES`.
    truncated: bool,
}

/// Weighted Space-Saving over captured operations of one (row, series,
/// identity).
///
/// Not thread-safe by itself (`&mut self` to insert): the sampler keeps one
/// per slot under that slot's lock. No clock, no I/O.
#[derive(Debug, Clone)]
pub(crate) struct CaptureSketch {
    capacity: usize,
    /// Counter storage; `live` of them are in use, the rest keep their key
    /// buffers for reuse after [`clear`](CaptureSketch::clear).
    counters: Vec<Counter>,
    live: usize,
    /// `counts[i]`: weight counted for counter `i`'s key, including the
    /// inherited over-count.
    counts: Vec<u64>,
    /// Index of a counter with the smallest count, when known (`None` after
    /// that counter grew): found again by one scan of `counts` at the next
    /// eviction, which at the capacities used (16..64) beats a heap's
    /// pointer-chasing sift on every increment.
    min: Option<usize>,
    /// Open-addressing index, entries `tag << 16 | counter index` or `EMPTY`
    /// (the tag is 16 high bits of the hash, so a probe rejects other keys
    /// without touching their counter); length a power of two at least twice
    /// the capacity, so probes stay short.
    table: Vec<u32>,
    /// Sum of every captured weight.
    weight: u64,
    /// Some capture had stride > 1.
    sampled: bool,
    /// Largest `weight * (stride - 1) / stride` of any capture: bounds the
    /// sampling variance per unit of count (see `summary`).
    ratio: f64,
}

impl CaptureSketch {
    /// An empty sketch keeping at most `capacity` counters (clamped to
    /// `1 ..= MAX_CAPTURE_CAPACITY`). Allocates nothing until the first
    /// insert, so idle rows cost only the struct.
    pub(crate) fn new(capacity: usize) -> CaptureSketch {
        CaptureSketch {
            capacity: capacity.clamp(1, MAX_CAPTURE_CAPACITY),
            counters: Vec::new(),
            live: 0,
            counts: Vec::new(),
            min: None,
            table: Vec::new(),
            weight: 0,
            sampled: false,
            ratio: 0.0,
        }
    }

    /// Counters kept at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counts one capture.
    ///
    /// `key` is already redacted (see [`KeyRedactor`](super::KeyRedactor));
    /// a key longer than [`MAX_HOT_KEY_BYTES`] is cut here too and marked
    /// truncated. `weight` is what the capture stands for (ops series: the
    /// stride; bytes series: bytes × stride); `stride` is the sampling stride
    /// in force (0 is read as 1; 1 means this op and every op before it in the
    /// window was captured). A zero weight counts nothing but still records
    /// that the capture sampled. Never allocates once `capacity` keys are
    /// held, except to grow a reused slot's key buffer. The key is hashed
    /// once; an eviction costs `O(log capacity)`.
    pub(crate) fn insert(&mut self, key: &[u8], truncated: bool, weight: u64, stride: u64) {
        let stride = stride.max(1);
        if stride > 1 {
            self.sampled = true;
            let r = weight as f64 * ((stride - 1) as f64 / stride as f64);
            if r > self.ratio {
                self.ratio = r;
            }
        }
        if weight == 0 {
            return;
        }
        let (key, truncated) = if key.len() > MAX_HOT_KEY_BYTES {
            (&key[..MAX_HOT_KEY_BYTES], true)
        } else {
            (key, truncated)
        };
        self.weight = self.weight.saturating_add(weight);
        let seen = weight / stride;
        if self.table.is_empty() {
            self.allocate();
        }
        let hash = hash_key(key);
        let tag = tag_of(hash);
        let mask = self.table.len() - 1;
        let mut pos = hash as usize & mask;
        loop {
            let entry = self.table[pos];
            if entry == EMPTY {
                break;
            }
            if entry >> 16 == tag {
                let idx = (entry & 0xffff) as usize;
                let counter = &mut self.counters[idx];
                if counter.key == key {
                    counter.seen = counter.seen.saturating_add(seen);
                    counter.truncated |= truncated;
                    self.counts[idx] = self.counts[idx].saturating_add(weight);
                    if self.min == Some(idx) {
                        self.min = None;
                    }
                    return;
                }
            }
            pos = (pos + 1) & mask;
        }
        if self.live < self.capacity {
            let idx = self.live;
            if idx < self.counters.len() {
                let counter = &mut self.counters[idx];
                counter.key.clear();
                counter.key.extend_from_slice(key);
                counter.hash = hash;
                counter.err = 0;
                counter.seen = seen;
                counter.truncated = truncated;
            } else {
                self.counters.push(Counter {
                    key: key.to_vec(),
                    hash,
                    err: 0,
                    seen,
                    truncated,
                });
            }
            self.live += 1;
            self.table[pos] = tag << 16 | idx as u32;
            self.counts.push(weight);
            // A known minimum stays one unless the newcomer is smaller.
            if let Some(m) = self.min
                && weight < self.counts[m]
            {
                self.min = Some(idx);
            }
            if idx == 0 {
                self.min = Some(0);
            }
            return;
        }
        // Full: the key takes the counter with the smallest count.
        let idx = match self.min {
            Some(m) => m,
            None => argmin(&self.counts),
        };
        self.table_remove(idx);
        let min = self.counts[idx];
        let counter = &mut self.counters[idx];
        counter.key.clear();
        counter.key.extend_from_slice(key);
        counter.hash = hash;
        counter.err = min;
        counter.seen = seen;
        counter.truncated = truncated;
        self.counts[idx] = min.saturating_add(weight);
        self.min = None;
        self.table_insert(idx, hash);
    }

    /// The summary of the captured traffic, given the exact total the row's
    /// counters hold for the same window.
    ///
    /// Every capture stride 1 (`sampled = false`, `unit_variance = 0`): the
    /// deterministic Space-Saving bounds on true counts, `lower = count - err`,
    /// `upper = count`, floor = the smallest count when all counters are used
    /// (else 0).
    ///
    /// Some stride > 1 (`sampled = true`): the same Space-Saving bounds, but on
    /// each key's captured weight `S`, an unbiased estimate of its true count
    /// `T`; each op deviates by at most `r` and has variance at most `r`, where
    /// `r` (`unit_variance`, rounded up) is the largest
    /// `weight·(stride-1)/stride` of any capture (exact for the ops series
    /// under 1-in-stride sampling of a well-mixed stream; for bytes it assumes
    /// skipped ops' values are no larger than captured ones).
    /// [`HotSummary::settle`] turns these into bounds on `T` after the
    /// summaries of a query are added up. `seen` (the key's own
    /// `Σ weight/stride`, every capture being at least one real op or its
    /// bytes) is a lower bound that holds always.
    ///
    /// `exact_total` above the captured weight (ops counted but not captured)
    /// adds the difference to every upper bound and to the floor. Every bound
    /// is clamped to `exact_total`, so [`HotSummary::validate`] passes.
    /// Allocates the returned items; does not change the sketch.
    pub(crate) fn summary(&self, exact_total: u64) -> HotSummary {
        let missing = exact_total.saturating_sub(self.weight);
        let live = &self.counters[..self.live];
        let min = if self.live >= self.capacity {
            self.counts.iter().copied().min().unwrap_or(0)
        } else {
            0
        };
        let mut items: Vec<HotItem> = live
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let count = self.counts[i];
                let upper = count.saturating_add(missing).min(exact_total);
                let estimate = count.min(upper);
                let lower = (count - c.err).min(estimate);
                HotItem {
                    key: c.key.clone(),
                    estimate,
                    lower,
                    upper,
                    truncated: c.truncated,
                    seen: c.seen.min(upper),
                }
            })
            .collect();
        items.sort_by(order);
        let unit_variance = if self.sampled {
            // At least 1, so "sampled" is never read as settled; `as`
            // saturates.
            (self.ratio.ceil() as u64).max(1)
        } else {
            0
        };
        HotSummary {
            total: exact_total,
            floor: min.saturating_add(missing).min(exact_total),
            sampled: self.sampled,
            unit_variance,
            items,
        }
    }

    /// Heap memory held (counters, key buffers, index, heap), in bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.counters.capacity() * std::mem::size_of::<Counter>()
            + self
                .counters
                .iter()
                .map(|c| c.key.capacity())
                .sum::<usize>()
            + self.counts.capacity() * std::mem::size_of::<u64>()
            + self.table.capacity() * std::mem::size_of::<u32>()
    }

    /// No capture counted since creation or the last [`clear`](Self::clear).
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0 && self.weight == 0 && !self.sampled
    }

    /// Forgets every capture but keeps the memory, for the next window.
    pub(crate) fn clear(&mut self) {
        self.live = 0;
        self.min = None;
        self.counts.clear();
        self.table.fill(EMPTY);
        self.weight = 0;
        self.sampled = false;
        self.ratio = 0.0;
    }

    fn allocate(&mut self) {
        let slots = (self.capacity * 2).next_power_of_two().max(4);
        self.table = vec![EMPTY; slots];
        self.counts = Vec::with_capacity(self.capacity);
        self.counters = Vec::with_capacity(self.capacity);
    }

    fn table_insert(&mut self, idx: usize, hash: u32) {
        let mask = self.table.len() - 1;
        let mut pos = hash as usize & mask;
        while self.table[pos] != EMPTY {
            pos = (pos + 1) & mask;
        }
        self.table[pos] = tag_of(hash) << 16 | idx as u32;
    }

    /// Removes counter `idx` from the index with backward-shift deletion, so
    /// no tombstones accumulate across evictions.
    fn table_remove(&mut self, idx: usize) {
        let mask = self.table.len() - 1;
        let mut hole = self.counters[idx].hash as usize & mask;
        while (self.table[hole] & 0xffff) as usize != idx {
            hole = (hole + 1) & mask;
        }
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let entry = self.table[j];
            if entry == EMPTY {
                break;
            }
            let ideal = self.counters[(entry & 0xffff) as usize].hash as usize & mask;
            // The entry at j may fill the hole if the hole lies on its probe
            // path, i.e. cyclically within [ideal, j).
            if (j.wrapping_sub(ideal) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.table[hole] = entry;
                hole = j;
            }
        }
        self.table[hole] = EMPTY;
    }

    /// The cached minimum and index reachability (tests only).
    #[cfg(test)]
    fn check_invariants(&self) {
        assert_eq!(self.counts.len(), self.live);
        if let Some(m) = self.min {
            assert_eq!(
                Some(self.counts[m]),
                self.counts.iter().copied().min(),
                "the cached minimum is a minimum"
            );
        }
        let entries = self.table.iter().filter(|&&e| e != EMPTY).count();
        assert_eq!(entries, self.live, "one index entry per live counter");
        for idx in 0..self.live {
            let c = &self.counters[idx];
            let mask = self.table.len() - 1;
            let mut pos = c.hash as usize & mask;
            loop {
                let e = self.table[pos];
                assert_ne!(e, EMPTY, "counter {idx} unreachable from its hash");
                if (e & 0xffff) as usize == idx {
                    assert_eq!(e >> 16, tag_of(c.hash));
                    break;
                }
                pos = (pos + 1) & mask;
            }
        }
    }
}

/// Index of the smallest count (the first, on ties): one branch-free pass.
fn argmin(counts: &[u64]) -> usize {
    let mut best = 0;
    let mut best_count = u64::MAX;
    for (i, &c) in counts.iter().enumerate() {
        if c < best_count {
            best_count = c;
            best = i;
        }
    }
    best
}

/// Not an API: [`CaptureSketch`] opened up for `benches/hotkeys.rs` and the
/// evaluation in `docs/PERFORMANCE.md` (benches link the crate from outside,
/// so they cannot reach `pub(crate)` items). Same methods, same guarantees.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct BenchSketch(CaptureSketch);

impl BenchSketch {
    /// [`CaptureSketch::new`].
    #[must_use = "constructor"]
    pub fn new(capacity: usize) -> BenchSketch {
        BenchSketch(CaptureSketch::new(capacity))
    }
    /// [`CaptureSketch::insert`].
    pub fn insert(&mut self, key: &[u8], truncated: bool, weight: u64, stride: u64) {
        self.0.insert(key, truncated, weight, stride);
    }
    /// [`CaptureSketch::summary`].
    #[must_use = "pure function"]
    pub fn summary(&self, exact_total: u64) -> HotSummary {
        self.0.summary(exact_total)
    }
    /// [`CaptureSketch::heap_bytes`].
    #[must_use = "pure function"]
    pub fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
    /// [`CaptureSketch::capacity`].
    #[must_use = "pure function"]
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
    /// [`CaptureSketch::is_empty`].
    #[must_use = "pure function"]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// [`CaptureSketch::clear`].
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One pass of FxHash over the key: fast, and collisions only cost a key
/// comparison (a 16-bit tag is compared before the bytes).
fn hash_key(key: &[u8]) -> u32 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    let f = h.finish();
    // Fold so both halves' entropy reach the slot bits and the tag.
    (f ^ (f >> 32)) as u32
}

/// The index tag of a hash: its top 16 bits (the low bits, at most 11 of
/// them at `MAX_CAPTURE_CAPACITY`, pick the slot).
fn tag_of(hash: u32) -> u32 {
    hash >> 16
}

/// The order of [`HotSummary::items`] (hottest first, ties by upper bound,
/// then by key); must match the private comparator in `summary.rs`, which
/// `validate` checks in every test below.
fn order(a: &HotItem, b: &HotItem) -> std::cmp::Ordering {
    b.estimate
        .cmp(&a.estimate)
        .then_with(|| b.upper.cmp(&a.upper))
        .then_with(|| a.key.cmp(&b.key))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    impl CaptureSketch {
        /// The one-cell answer a query gives: the summary, settled.
        fn summary_settled(&self, exact_total: u64) -> HotSummary {
            self.summary(exact_total).settle()
        }
    }

    /// splitmix64: a tiny seeded generator, so trials are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Zipf(s) over `n` ranks by inverse CDF.
    struct Zipf(Vec<f64>);
    impl Zipf {
        fn new(n: usize, s: f64) -> Zipf {
            let mut cdf = Vec::with_capacity(n);
            let mut acc = 0.0;
            for rank in 1..=n {
                acc += 1.0 / (rank as f64).powf(s);
                cdf.push(acc);
            }
            for c in &mut cdf {
                *c /= acc;
            }
            Zipf(cdf)
        }
        fn sample(&self, rng: &mut Rng) -> usize {
            let u = rng.unit();
            self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
        }
    }

    fn key(i: u64) -> Vec<u8> {
        format!("user:{i:011}").into_bytes()
    }

    fn check_bounds(s: &HotSummary, truth: &HashMap<Vec<u8>, u64>) {
        s.validate().expect("summary invariants");
        for item in &s.items {
            let t = truth.get(&item.key).copied().unwrap_or(0);
            assert!(
                item.lower <= t && t <= item.upper,
                "key {:?}: true {t} outside [{}, {}]",
                String::from_utf8_lossy(&item.key),
                item.lower,
                item.upper
            );
        }
        for (k, &t) in truth {
            if !s.items.iter().any(|i| &i.key == k) {
                assert!(
                    t <= s.floor,
                    "unlisted key true {t} above floor {}",
                    s.floor
                );
            }
        }
    }

    proptest! {
        #[test]
        fn deterministic_bounds_contain_every_true_count(
            capacity in 1usize..24,
            stream in prop::collection::vec((0u64..60, 1u64..50), 0..600),
        ) {
            let mut sk = CaptureSketch::new(capacity);
            let mut truth: HashMap<Vec<u8>, u64> = HashMap::new();
            let mut total = 0u64;
            for &(k, w) in &stream {
                sk.insert(&key(k), false, w, 1);
                *truth.entry(key(k)).or_default() += w;
                total += w;
            }
            let s = sk.summary_settled(total);
            prop_assert!(!s.sampled);
            prop_assert_eq!(s.total, total);
            prop_assert!(s.items.len() <= capacity);
            check_bounds(&s, &truth);
            // Every key heavier than total / capacity is listed.
            for (k, &t) in &truth {
                if t * capacity as u64 > total {
                    prop_assert!(s.items.iter().any(|i| &i.key == k), "heavy hitter unlisted");
                }
            }
        }

        #[test]
        fn uncaptured_ops_widen_every_upper_bound_and_the_floor(
            stream in prop::collection::vec(0u64..30, 1..300),
            uncaptured in prop::collection::vec(0u64..30, 0..100),
        ) {
            let mut sk = CaptureSketch::new(8);
            let mut truth: HashMap<Vec<u8>, u64> = HashMap::new();
            for &k in &stream {
                sk.insert(&key(k), false, 1, 1);
                *truth.entry(key(k)).or_default() += 1;
            }
            // Counted by the row's exact counters but never captured.
            for &k in &uncaptured {
                *truth.entry(key(k)).or_default() += 1;
            }
            let total = (stream.len() + uncaptured.len()) as u64;
            check_bounds(&sk.summary_settled(total), &truth);
        }
    }

    #[test]
    fn a_heavy_hitter_above_one_over_capacity_is_listed_among_many_distinct_keys() {
        let mut rng = Rng(7);
        let mut sk = CaptureSketch::new(16);
        let mut total = 0;
        let mut hot = 0;
        for i in 0..50_000u64 {
            // 1 op in 10 is the hot key (share 0.1 > 1/16); the rest are distinct.
            let k = if rng.below(10) == 0 {
                hot += 1;
                b"hot:counter".to_vec()
            } else {
                key(i)
            };
            sk.insert(&k, false, 1, 1);
            total += 1;
        }
        let s = sk.summary_settled(total);
        s.validate().expect("valid");
        let top = &s.items[0];
        assert_eq!(top.key, b"hot:counter");
        assert!(top.lower <= hot && hot <= top.upper);
        assert!(s.floor < hot, "the floor stays below the heavy hitter");
    }

    #[test]
    fn exact_stream_with_room_to_spare_reports_exact_counts_and_zero_floor() {
        let mut sk = CaptureSketch::new(8);
        for (k, n) in [("a", 5u64), ("b", 3), ("c", 1)] {
            for _ in 0..n {
                sk.insert(k.as_bytes(), false, 1, 1);
            }
        }
        let s = sk.summary_settled(9);
        s.validate().expect("valid");
        assert_eq!(s.floor, 0);
        let got: Vec<_> = s
            .items
            .iter()
            .map(|i| (i.key.as_slice(), i.lower, i.estimate, i.upper))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"a"[..], 5, 5, 5),
                (&b"b"[..], 3, 3, 3),
                (&b"c"[..], 1, 1, 1)
            ]
        );
    }

    #[test]
    fn long_keys_are_cut_and_marked_truncated() {
        let mut sk = CaptureSketch::new(4);
        let long = vec![b'x'; MAX_HOT_KEY_BYTES + 10];
        sk.insert(&long, false, 1, 1);
        let s = sk.summary_settled(1);
        s.validate().expect("valid");
        assert_eq!(s.items[0].key.len(), MAX_HOT_KEY_BYTES);
        assert!(s.items[0].truncated);
    }

    #[test]
    fn clear_forgets_everything_but_keeps_the_memory() {
        let mut sk = CaptureSketch::new(8);
        assert!(sk.is_empty());
        assert_eq!(sk.heap_bytes(), 0, "an idle sketch allocates nothing");
        for i in 0..100 {
            sk.insert(&key(i), false, 1, 4);
        }
        let before = sk.heap_bytes();
        assert!(!sk.is_empty());
        sk.clear();
        assert!(sk.is_empty());
        assert_eq!(sk.heap_bytes(), before);
        let s = sk.summary_settled(0);
        assert!(s.items.is_empty() && !s.sampled && s.floor == 0);
        sk.insert(b"again", false, 2, 1);
        let s = sk.summary_settled(2);
        assert_eq!(s.items.len(), 1);
        assert_eq!((s.items[0].lower, s.items[0].upper), (2, 2));
        assert!(!s.sampled, "clear resets the sampled flag");
    }

    #[test]
    fn the_index_survives_many_evictions() {
        // Evictions churn the open-addressing table; every live key must stay
        // findable (otherwise a key would get two counters and validate fails).
        let mut rng = Rng(99);
        let mut sk = CaptureSketch::new(32);
        let mut total = 0;
        for i in 0..200_000 {
            let k = key(rng.below(500));
            let w = 1 + rng.below(3);
            sk.insert(&k, false, w, 1);
            total += w;
            if i % 997 == 0 {
                sk.check_invariants();
            }
        }
        sk.check_invariants();
        let s = sk.summary_settled(total);
        s.validate().expect("no key listed twice after churn");
        assert_eq!(s.items.len(), 32);
    }

    /// How a trial's capture stride evolves.
    #[derive(Clone, Copy, Debug)]
    enum Schedule {
        /// Every op for the first `young`, then 1 in `stride`.
        Fixed { young: u64, stride: u64 },
        /// Every op for the first `young`, then the stride doubles every
        /// `young` captures up to `max`, as the sampler escalates a busy row.
        Escalating { young: u64, max: u64 },
    }

    /// Misses of one series of trials: (listed checks, listed misses,
    /// unlisted checks, unlisted misses), the summed relative interval width
    /// of the hottest key and its number of trials, the largest floor / total.
    #[derive(Default, Debug)]
    struct Coverage([u64; 4], f64, u64, f64);

    /// One trial of the sampled-coverage experiment: a Zipf(1.1) stream of
    /// `n` ops over 2 000 keys, captured systematically on the row's own op
    /// counter (the op whose counter value is a multiple of the stride is
    /// captured with weight = stride, or bytes × stride), as the sampler
    /// does. Checks every listed key's bounds and every unlisted key against
    /// the floor.
    fn sampled_trial(
        seed: u64,
        n: u64,
        schedule: Schedule,
        bytes: bool,
        keys: &[Vec<u8>],
        zipf: &Zipf,
        cov: &mut Coverage,
    ) {
        sampled_windows_trial(seed, n, 1, schedule, bytes, keys, zipf, cov);
    }

    /// [`sampled_trial`] cut into `windows` windows of `n / windows` ops, each
    /// captured by a fresh sketch whose schedule restarts (as the sampler's
    /// counters do at every seal), summarised, trimmed to the 8 keys a cell
    /// keeps when there are several windows, added up in captured weight and
    /// settled once, as a query does.
    #[allow(clippy::too_many_arguments)]
    fn sampled_windows_trial(
        seed: u64,
        n: u64,
        windows: u64,
        schedule: Schedule,
        bytes: bool,
        keys: &[Vec<u8>],
        zipf: &Zipf,
        cov: &mut Coverage,
    ) {
        let mut rng = Rng(seed);
        let mut truth = vec![0u64; keys.len()];
        let mut cells = Vec::new();
        for _ in 0..windows {
            let mut sk = CaptureSketch::new(32);
            let mut total = 0u64;
            let mut stride = 1u64;
            let mut captures_at_stride = 0u64;
            for op in 0..n / windows {
                let rank = zipf.sample(&mut rng);
                // Bytes series: value sizes 1..=64, independent of the key.
                let amount = if bytes { 1 + rng.below(64) } else { 1 };
                truth[rank] += amount;
                total += amount;
                let (young, max) = match schedule {
                    Schedule::Fixed { young, stride } => (young, stride),
                    Schedule::Escalating { young, max } => (young, max),
                };
                if op < young {
                    sk.insert(&keys[rank], false, amount, 1);
                    continue;
                }
                if stride == 1 {
                    stride = match schedule {
                        Schedule::Fixed { .. } => max,
                        Schedule::Escalating { .. } => 2,
                    };
                }
                if op.is_multiple_of(stride) {
                    sk.insert(&keys[rank], false, amount * stride, stride);
                    captures_at_stride += 1;
                    if matches!(schedule, Schedule::Escalating { .. })
                        && captures_at_stride >= young
                        && stride < max
                    {
                        stride *= 2;
                        captures_at_stride = 0;
                    }
                }
            }
            let mut cell = sk.summary(total);
            if windows > 1 {
                cell.trim(8);
            }
            cells.push(cell);
        }
        let s = HotSummary::sum_disjoint(cells.iter()).settle();
        cov.3 = cov.3.max(s.floor as f64 / s.total.max(1) as f64);
        s.validate().expect("valid");
        assert!(s.sampled);
        let mut listed = vec![false; keys.len()];
        for item in &s.items {
            let rank = keys.iter().position(|k| *k == item.key).expect("known key");
            listed[rank] = true;
            let t = truth[rank];
            cov.0[0] += 1;
            if rank == 0 && t > 0 {
                cov.1 += (item.upper - item.lower) as f64 / t as f64;
                cov.2 += 1;
            }
            if !(item.lower <= t && t <= item.upper) {
                cov.0[1] += 1;
            }
        }
        for (rank, &t) in truth.iter().enumerate() {
            if !listed[rank] && t > 0 {
                cov.0[2] += 1;
                if t > s.floor {
                    cov.0[3] += 1;
                }
            }
        }
    }

    #[test]
    fn sampled_bounds_cover_the_true_count_in_at_least_99_percent_of_trials() {
        let keys: Vec<Vec<u8>> = (0..2_000).map(key).collect();
        let zipf = Zipf::new(keys.len(), 1.1);
        let schedules = [
            Schedule::Fixed {
                young: 256,
                stride: 2,
            },
            Schedule::Fixed {
                young: 256,
                stride: 8,
            },
            Schedule::Fixed {
                young: 256,
                stride: 64,
            },
            Schedule::Escalating {
                young: 256,
                max: 64,
            },
        ];
        let mut all = Coverage::default();
        for schedule in schedules {
            for bytes in [false, true] {
                let mut cov = Coverage::default();
                for seed in 0..50 {
                    sampled_trial(seed, 30_000, schedule, bytes, &keys, &zipf, &mut cov);
                }
                let listed = 1.0 - cov.0[1] as f64 / cov.0[0] as f64;
                let unlisted = 1.0 - cov.0[3] as f64 / cov.0[2].max(1) as f64;
                eprintln!(
                    "{schedule:?} bytes={bytes}: listed {listed:.4} of {}, unlisted {unlisted:.4} of {}, \
                     hottest key's (upper - lower) / true = {:.3}",
                    cov.0[0],
                    cov.0[2],
                    cov.1 / cov.2.max(1) as f64
                );
                assert!(
                    listed >= 0.99,
                    "{schedule:?} bytes={bytes}: listed coverage {listed:.4}"
                );
                assert!(
                    unlisted >= 0.99,
                    "{schedule:?} bytes={bytes}: floor coverage {unlisted:.4}"
                );
                for i in 0..4 {
                    all.0[i] += cov.0[i];
                }
            }
        }
        eprintln!("all: {all:?}");
    }

    /// The query's case: many sampled windows of one row (the quiet row's
    /// scheme: 32 exact, then 1 in 64; and a busy row's escalation), each
    /// trimmed to a cell's 8 keys, added in captured weight and settled once.
    /// The bounds must still cover the true counts in at least 99 % of
    /// checks, and the floor must stay a small part of the total (settling
    /// each window and adding intervals made it most of the total).
    #[test]
    fn summed_windows_settled_once_cover_the_true_count_in_at_least_99_percent_of_trials() {
        let keys: Vec<Vec<u8>> = (0..2_000).map(key).collect();
        let zipf = Zipf::new(keys.len(), 1.1);
        let schedules = [
            Schedule::Fixed {
                young: 32,
                stride: 64,
            },
            Schedule::Escalating { young: 64, max: 64 },
        ];
        for schedule in schedules {
            for bytes in [false, true] {
                let mut cov = Coverage::default();
                for seed in 0..40 {
                    sampled_windows_trial(
                        seed, 30_000, 30, schedule, bytes, &keys, &zipf, &mut cov,
                    );
                }
                let listed = 1.0 - cov.0[1] as f64 / cov.0[0] as f64;
                let unlisted = 1.0 - cov.0[3] as f64 / cov.0[2].max(1) as f64;
                eprintln!(
                    "30 windows, {schedule:?} bytes={bytes}: listed {listed:.4} of {}, \
                     unlisted {unlisted:.4} of {}, hottest key's (upper - lower) / true = {:.3}, \
                     largest floor / total = {:.3}",
                    cov.0[0],
                    cov.0[2],
                    cov.1 / cov.2.max(1) as f64,
                    cov.3
                );
                assert!(
                    listed >= 0.99,
                    "{schedule:?} bytes={bytes}: listed {listed:.4}"
                );
                assert!(
                    unlisted >= 0.99,
                    "{schedule:?} bytes={bytes}: floor coverage {unlisted:.4}"
                );
                // Measured 0.12 (ops) and 0.23 (bytes: one capture stands
                // for up to 64 × 64 bytes) at most: a key captured once at
                // stride 64 weighs 64, and each cell's ninth key joins its
                // floor. Settling each window instead made it 0.95 and more.
                let limit = if bytes { 0.35 } else { 0.2 };
                assert!(
                    cov.3 <= limit,
                    "{schedule:?} bytes={bytes}: floor up to {:.3} of the total",
                    cov.3
                );
            }
        }
    }

    #[test]
    fn a_zero_weight_capture_counts_nothing_but_marks_the_summary_sampled() {
        let mut sk = CaptureSketch::new(4);
        sk.insert(b"empty-value", false, 0, 8);
        assert!(!sk.is_empty());
        let s = sk.summary_settled(0);
        s.validate().expect("valid");
        assert!(s.sampled);
        assert!(s.items.is_empty());
    }

    #[test]
    fn sampled_bounds_also_absorb_uncaptured_ops() {
        let mut sk = CaptureSketch::new(4);
        for _ in 0..10 {
            sk.insert(b"a", false, 4, 4);
        }
        let without = sk.summary_settled(40);
        let with = sk.summary_settled(140);
        without.validate().expect("valid");
        with.validate().expect("valid");
        // The uncaptured ops join the weight bounds before the sampling
        // interval is added, so they widen it by at least their number.
        assert!(with.items[0].upper >= without.items[0].upper + 100);
        assert!(with.floor >= without.floor + 100);
        assert_eq!(with.items[0].lower, without.items[0].lower);
    }

    #[test]
    fn a_key_captured_once_under_sampling_keeps_a_lower_bound_of_one() {
        let mut sk = CaptureSketch::new(4);
        sk.insert(b"k", false, 1024, 1024);
        let s = sk.summary_settled(1024);
        s.validate().expect("valid");
        assert!(s.sampled);
        assert!(s.items[0].lower >= 1);
        assert_eq!(s.items[0].upper, 1024);
    }
}
