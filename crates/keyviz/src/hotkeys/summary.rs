//! A bounded top-keys summary with per-key lower and upper bounds, and how two
//! summaries of disjoint traffic add up.
//!
//! Every producer (the capture sketch at seal, the history at query time, a
//! peer) reduces its traffic to a [`HotSummary`]: the exact total it stands
//! for, the listed keys with `lower <= true count <= upper` for each, and a
//! `floor` that bounds the count of every key *not* listed. Adding two
//! summaries of disjoint traffic keeps all three guarantees (see
//! [`HotSummary::add_disjoint`]), so windows, rows, nodes' reads and write
//! identities combine without losing honesty.
//!
//! A *sampled* summary (`unit_variance > 0`) keeps its bounds on the
//! *captured weight* of each key, not yet on its true count: sampling errors
//! of disjoint traffic are independent, so they add up in variance (their
//! spread grows with the square root of the count), whereas adding
//! per-part confidence intervals would add their widths (and every part's
//! `z²·r` allowance for keys it never captured: one hour of one-second cells
//! summed to a floor of 95 % of the total). Summaries are added in weight
//! space and turned into bounds on the true counts once, at the end, by
//! [`HotSummary::settle`].

use serde::{Deserialize, Serialize};

/// Longest key kept verbatim; a longer key is kept as its first
/// `MAX_HOT_KEY_BYTES` bytes with [`HotItem::truncated`] set (its identity is
/// then that prefix: two long keys sharing it count as one entry).
pub const MAX_HOT_KEY_BYTES: usize = 256;

/// Most items any [`HotSummary`] accepted from outside may list
/// ([`HotSummary::validate`]); producers trim to far fewer.
pub const MAX_SUMMARY_ITEMS: usize = 4_096;

/// One key of a [`HotSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotItem {
    /// The key as captured: raw bytes, or the redacted form in hashed mode.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// Best estimate of the key's count (operations or bytes, by series).
    pub estimate: u64,
    /// The key's true count is at least this (see [`HotSummary::sampled`]).
    pub lower: u64,
    /// The key's true count is at most this.
    pub upper: u64,
    /// The key was longer than [`MAX_HOT_KEY_BYTES`] and is shown cut.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// Operations (or bytes) certainly of this key: each capture counts one
    /// real operation whatever its sampling weight, so this lower bound holds
    /// always, also when the other bounds are statistical. 0 when unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seen: u64,
}

/// The top keys of some traffic, with bounds.
///
/// Invariants ([`HotSummary::validate`]): items sorted by estimate descending
/// (then key ascending), keys unique, `lower <= estimate <= upper <= total`
/// for each, `floor <= total`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HotSummary {
    /// The exact count of the traffic this summary stands for.
    pub total: u64,
    /// Upper bound on the count of any key not listed in `items`.
    pub floor: u64,
    /// True when the bounds are statistical (the capture sampled operations,
    /// see `docs/CORE_API.md`): each bound then holds with the documented
    /// confidence instead of always.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sampled: bool,
    /// 0: `lower`, `upper` and `floor` bound true counts. Above 0: the
    /// summary is not settled yet, they bound each key's *captured weight*
    /// `S`, and this is `r`, the bound on the sampling variance per unit of
    /// count (`Var(S) <= r·T` for a key of true count `T`, see
    /// `docs/CORE_API.md`); [`settle`](HotSummary::settle) turns them into
    /// bounds on true counts. Adding summaries keeps the largest `r`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unit_variance: u64,
    /// The listed keys, hottest first.
    #[serde(default)]
    pub items: Vec<HotItem>,
}

/// A summary broke one of its invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SummaryError {
    /// More than [`MAX_SUMMARY_ITEMS`] items.
    #[error("hot-key summary lists {0} keys, more than the limit of {MAX_SUMMARY_ITEMS}")]
    TooManyItems(usize),
    /// A key longer than [`MAX_HOT_KEY_BYTES`].
    #[error("hot key {0} is {1} bytes long, more than {MAX_HOT_KEY_BYTES}")]
    KeyTooLong(usize, usize),
    /// `lower <= estimate <= upper <= total` or `seen <= upper` does not hold
    /// for item `i`.
    #[error(
        "hot key {0} has inconsistent bounds (lower <= estimate <= upper <= total and seen <= upper broken)"
    )]
    Bounds(usize),
    /// `floor > total`.
    #[error("hot-key floor exceeds the total")]
    Floor,
    /// A part lists more than `MAX_PART_SPANS` key spans, or one that is
    /// empty or has a key longer than `MAX_SPAN_KEY_BYTES`.
    #[error(
        "hot-key part lists more than 1024 key spans, an empty one, or a span key longer than 4096 bytes"
    )]
    Span,
    /// Items not sorted by estimate, or a key listed twice.
    #[error("hot keys are not sorted by estimate or list a key twice (at {0})")]
    Order(usize),
}

impl HotSummary {
    /// The summary of traffic with no operations.
    #[must_use = "constructor"]
    pub fn empty() -> HotSummary {
        HotSummary::default()
    }

    /// Checks the invariants on the type, so a malformed peer answer is
    /// refused as a whole before it can skew a merge.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn validate(&self) -> Result<(), SummaryError> {
        if self.items.len() > MAX_SUMMARY_ITEMS {
            return Err(SummaryError::TooManyItems(self.items.len()));
        }
        if self.floor > self.total {
            return Err(SummaryError::Floor);
        }
        let mut seen = std::collections::HashSet::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            if item.key.len() > MAX_HOT_KEY_BYTES {
                return Err(SummaryError::KeyTooLong(i, item.key.len()));
            }
            if !(item.lower <= item.estimate
                && item.estimate <= item.upper
                && item.upper <= self.total
                && item.seen <= item.upper)
            {
                return Err(SummaryError::Bounds(i));
            }
            if !seen.insert(item.key.as_slice()) {
                return Err(SummaryError::Order(i));
            }
            if i > 0 && order(&self.items[i - 1], item) == std::cmp::Ordering::Greater {
                return Err(SummaryError::Order(i));
            }
        }
        Ok(())
    }

    /// Adds `other`, which must summarise traffic disjoint from `self`'s
    /// (another window, another row, another node's reads, another write
    /// identity). Keeps every invariant: totals add; a key listed in both adds
    /// its estimates and bounds; a key listed in only one side gets the other
    /// side's `floor` added to its upper bound (it may have been there,
    /// unlisted) and nothing to its lower bound; the new floor is the sum of
    /// floors. No trimming: call [`trim`](HotSummary::trim) after a batch of adds.
    pub fn add_disjoint(&mut self, other: &HotSummary) {
        if other.total == 0 && other.items.is_empty() {
            return;
        }
        let mut merged: Vec<HotItem> = Vec::with_capacity(self.items.len() + other.items.len());
        let mut theirs: std::collections::HashMap<&[u8], &HotItem> = other
            .items
            .iter()
            .map(|item| (item.key.as_slice(), item))
            .collect();
        for mine in self.items.drain(..) {
            let item = match theirs.remove(mine.key.as_slice()) {
                Some(t) => HotItem {
                    estimate: mine.estimate.saturating_add(t.estimate),
                    lower: mine.lower.saturating_add(t.lower),
                    upper: mine.upper.saturating_add(t.upper),
                    seen: mine.seen.saturating_add(t.seen),
                    truncated: mine.truncated || t.truncated,
                    key: mine.key,
                },
                None => HotItem {
                    upper: mine.upper.saturating_add(other.floor),
                    ..mine
                },
            };
            merged.push(item);
        }
        for t in other.items.iter() {
            if theirs.contains_key(t.key.as_slice()) {
                merged.push(HotItem {
                    upper: t.upper.saturating_add(self.floor),
                    ..t.clone()
                });
            }
        }
        self.total = self.total.saturating_add(other.total);
        self.floor = self.floor.saturating_add(other.floor);
        self.sampled |= other.sampled;
        self.unit_variance = self.unit_variance.max(other.unit_variance);
        for item in &mut merged {
            item.upper = item.upper.min(self.total);
        }
        self.floor = self.floor.min(self.total);
        merged.sort_by(order);
        self.items = merged;
    }

    /// The sum of summaries of pairwise disjoint traffic: the same result as
    /// starting from [`empty`](HotSummary::empty) and calling
    /// [`add_disjoint`](HotSummary::add_disjoint) for each (for valid inputs),
    /// in one pass, so the cost is linear in the listed items instead of
    /// quadratic in the number of summaries. A key's upper bound gains the
    /// floors of exactly the summaries that do not list it.
    #[must_use = "returns the sum"]
    pub fn sum_disjoint<'a>(parts: impl IntoIterator<Item = &'a HotSummary>) -> HotSummary {
        let (mut total, mut floor, mut sampled, mut unit_variance) = (0u64, 0u64, false, 0u64);
        // key -> (summed item, sum of the floors of the summaries listing it)
        let mut keys: std::collections::HashMap<&[u8], (HotItem, u64)> =
            std::collections::HashMap::new();
        for p in parts {
            if p.total == 0 && p.items.is_empty() {
                continue;
            }
            total = total.saturating_add(p.total);
            floor = floor.saturating_add(p.floor);
            sampled |= p.sampled;
            unit_variance = unit_variance.max(p.unit_variance);
            for it in &p.items {
                match keys.get_mut(it.key.as_slice()) {
                    Some((acc, listed_floor)) => {
                        acc.estimate = acc.estimate.saturating_add(it.estimate);
                        acc.lower = acc.lower.saturating_add(it.lower);
                        acc.upper = acc.upper.saturating_add(it.upper);
                        acc.seen = acc.seen.saturating_add(it.seen);
                        acc.truncated |= it.truncated;
                        *listed_floor = listed_floor.saturating_add(p.floor);
                    }
                    None => {
                        keys.insert(it.key.as_slice(), (it.clone(), p.floor));
                    }
                }
            }
        }
        let mut items: Vec<HotItem> = keys
            .into_values()
            .map(|(mut item, listed_floor)| {
                item.upper = item
                    .upper
                    .saturating_add(floor.saturating_sub(listed_floor))
                    .min(total);
                item
            })
            .collect();
        items.sort_by(order);
        HotSummary {
            total,
            floor: floor.min(total),
            sampled,
            unit_variance,
            items,
        }
    }

    /// The sum of summaries of traffic on pairwise disjoint *key sets* (rows
    /// whose key ranges do not overlap): a key listed in one part had no
    /// traffic in any other, so unlike [`sum_disjoint`](HotSummary::sum_disjoint)
    /// its upper bound gains nothing from the other parts' floors, and the
    /// floor (a bound on any one unlisted key, which lies in one part) is the
    /// largest floor instead of their sum. Totals add. A key listed by two
    /// parts, or marked `truncated` (its identity is a prefix that may stand
    /// for keys of several parts), is added as `sum_disjoint` adds it, with
    /// the floors of the parts that do not list it. One pass, linear in the
    /// listed items; no trimming.
    #[must_use = "returns the union"]
    pub fn union_key_disjoint<'a>(parts: impl IntoIterator<Item = &'a HotSummary>) -> HotSummary {
        let (mut total, mut floor, mut floors, mut sampled, mut unit_variance) =
            (0u64, 0u64, 0u64, false, 0u64);
        // key -> (summed item, floors of the parts listing it, parts listing it)
        let mut keys: std::collections::HashMap<&[u8], (HotItem, u64, u32)> =
            std::collections::HashMap::new();
        for p in parts {
            if p.total == 0 && p.items.is_empty() {
                continue;
            }
            total = total.saturating_add(p.total);
            floor = floor.max(p.floor);
            floors = floors.saturating_add(p.floor);
            sampled |= p.sampled;
            unit_variance = unit_variance.max(p.unit_variance);
            for it in &p.items {
                match keys.get_mut(it.key.as_slice()) {
                    Some((acc, listed_floor, n)) => {
                        acc.estimate = acc.estimate.saturating_add(it.estimate);
                        acc.lower = acc.lower.saturating_add(it.lower);
                        acc.upper = acc.upper.saturating_add(it.upper);
                        acc.seen = acc.seen.saturating_add(it.seen);
                        acc.truncated |= it.truncated;
                        *listed_floor = listed_floor.saturating_add(p.floor);
                        *n += 1;
                    }
                    None => {
                        keys.insert(it.key.as_slice(), (it.clone(), p.floor, 1));
                    }
                }
            }
        }
        let mut items: Vec<HotItem> = keys
            .into_values()
            .map(|(mut item, listed_floor, n)| {
                if n > 1 || item.truncated {
                    item.upper = item
                        .upper
                        .saturating_add(floors.saturating_sub(listed_floor));
                }
                item.upper = item.upper.min(total);
                item
            })
            .collect();
        items.sort_by(order);
        HotSummary {
            total,
            floor: floor.min(total),
            sampled,
            unit_variance,
            items,
        }
    }

    /// The same summary with bounds on true counts (`unit_variance` 0): the
    /// captured-weight bounds of a sampled summary are widened once, by the
    /// sampling interval of the whole summed weight (see `docs/CORE_API.md`):
    /// `upper = (z·√r/2 + √(z²r/4 + upper_S))²` (`z` = 3), `lower` = the
    /// Bernstein bound of `lower_S` at a one-sided tail of 0.135 %, but never
    /// below `seen`, which always holds; `floor` is widened like an upper
    /// bound. Every bound is clamped to `total`; `estimate` is clamped into
    /// `[lower, upper]`. A settled summary is returned as it is. Call it once,
    /// after every add: adding settled summaries is honest but adds interval
    /// widths instead of variances.
    #[must_use = "returns the settled summary"]
    pub fn settle(mut self) -> HotSummary {
        let r = self.unit_variance as f64;
        if self.unit_variance == 0 {
            return self;
        }
        let total = self.total;
        for item in &mut self.items {
            let upper = score_upper(item.upper, r, SAMPLED_Z).min(total);
            let lower = bernstein_lower(item.lower, r, SAMPLED_LAMBDA)
                .max(item.seen)
                .min(upper);
            item.upper = upper;
            item.lower = lower;
            item.estimate = item.estimate.clamp(lower, upper);
        }
        self.floor = score_upper(self.floor, r, SAMPLED_Z).min(total);
        self.unit_variance = 0;
        self.items.sort_by(order);
        self
    }

    /// Keeps the `k` hottest items. A dropped item's upper bound joins the
    /// floor, so "any unlisted key is at most `floor`" still holds.
    pub fn trim(&mut self, k: usize) {
        if self.items.len() <= k {
            return;
        }
        self.items.sort_by(order);
        for dropped in self.items.drain(k..) {
            self.floor = self.floor.max(dropped.upper);
        }
    }
}

/// Hottest first; ties by key so every node orders alike.
fn order(a: &HotItem, b: &HotItem) -> std::cmp::Ordering {
    b.estimate
        .cmp(&a.estimate)
        .then_with(|| b.upper.cmp(&a.upper))
        .then_with(|| a.key.cmp(&b.key))
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Width, in standard deviations, of the sampling interval [`HotSummary::settle`]
/// adds to the upper bounds (two-sided 3 sigma: 99.7 % under the normal
/// approximation; the coverage measured by
/// `sampled_bounds_cover_the_true_count_in_at_least_99_percent_of_trials`
/// is recorded in `docs/CORE_API.md`).
pub(crate) const SAMPLED_Z: f64 = 3.0;

/// `ln(1 / 0.00135)`: the one-sided tail of 3 sigma, used for the lower
/// bounds, whose Bernstein form has no normal approximation (see
/// [`bernstein_lower`]).
pub(crate) const SAMPLED_LAMBDA: f64 = 6.607_7;

/// Largest true count `T` consistent with a captured weight `x` at `z`
/// standard deviations, when `Var(S) <= r·T`: the score interval of
/// `S >= T - z·sqrt(r·T)`, rounded up. This side's tail is light: an
/// operation can only be under-counted by one unit.
pub(crate) fn score_upper(x: u64, r: f64, z: f64) -> u64 {
    if r <= 0.0 {
        return x;
    }
    let half = z * r.sqrt() / 2.0;
    let t = half + (half * half + x as f64).sqrt();
    // `as` saturates: a bound beyond u64 is clamped to the total anyway.
    (t * t).ceil() as u64
}

/// Smallest `T` consistent with a captured weight `x` under Bernstein's
/// inequality, rounded down.
///
/// The estimate's right tail is heavy (one capture at stride `s` stands for
/// `s` ops, so a key with a single op can show weight `s`), which a normal
/// approximation misses; Bernstein's bound accounts for it. Each op adds a
/// deviation of at most `r` above its true share and variance at most `r`
/// per unit, so `P(S - T >= t) <= exp(-t² / (2(rT + rt/3)))`. Setting that
/// to `exp(-lambda)` and solving `T + t(T) = x` gives the smaller root of
/// `T² - 2(x - a + lambda·r)T + (x - a)² - a² = 0` with `a = lambda·r/3`.
pub(crate) fn bernstein_lower(x: u64, r: f64, lambda: f64) -> u64 {
    if r <= 0.0 {
        return x;
    }
    let xf = x as f64;
    let a = lambda * r / 3.0;
    if xf <= 2.0 * a {
        return 0;
    }
    let b = xf - a + lambda * r;
    let c = (xf - a) * (xf - a) - a * a;
    let t = (b - (b * b - c).max(0.0).sqrt()).max(0.0);
    (t.floor() as u64).min(x)
}

pub(crate) mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, n: u64) -> HotItem {
        HotItem {
            key: key.as_bytes().to_vec(),
            estimate: n,
            lower: n,
            upper: n,
            truncated: false,
            seen: 0,
        }
    }

    fn exact(total: u64, items: &[(&str, u64)]) -> HotSummary {
        let mut s = HotSummary {
            total,
            floor: 0,
            sampled: false,
            unit_variance: 0,
            items: items.iter().map(|(k, n)| item(k, *n)).collect(),
        };
        s.items.sort_by(order);
        s
    }

    #[test]
    fn a_key_missing_on_one_side_gains_that_sides_floor_as_upper_bound_only() {
        let mut a = exact(100, &[("hot", 60), ("warm", 30)]);
        a.floor = 10;
        let mut b = exact(50, &[("hot", 20), ("cold", 25)]);
        b.floor = 5;
        a.add_disjoint(&b);
        assert_eq!(a.total, 150);
        assert_eq!(a.floor, 15);
        let get = |k: &str| a.items.iter().find(|i| i.key == k.as_bytes()).cloned();
        let hot = get("hot").expect("hot listed");
        assert_eq!((hot.lower, hot.estimate, hot.upper), (80, 80, 80));
        let warm = get("warm").expect("warm listed");
        assert_eq!((warm.lower, warm.upper), (30, 35));
        let cold = get("cold").expect("cold listed");
        assert_eq!((cold.lower, cold.upper), (25, 35));
        assert_eq!(a.items[0].key, b"hot");
        a.validate().expect("merged summary keeps its invariants");
    }

    #[test]
    fn trimming_moves_the_dropped_upper_bound_into_the_floor() {
        let mut s = exact(100, &[("a", 50), ("b", 30), ("c", 20)]);
        s.trim(2);
        assert_eq!(s.items.len(), 2);
        assert_eq!(s.floor, 20);
        s.validate().expect("valid");
    }

    #[test]
    fn validate_refuses_bounds_beyond_the_total_and_duplicates() {
        let mut s = exact(10, &[("a", 5)]);
        s.items[0].upper = 11;
        assert_eq!(s.validate(), Err(SummaryError::Bounds(0)));
        let mut d = exact(10, &[("a", 5)]);
        d.items.push(item("a", 5));
        assert!(matches!(d.validate(), Err(SummaryError::Order(1))));
    }

    #[test]
    fn sum_disjoint_equals_repeated_adds_in_one_pass() {
        let mut parts = Vec::new();
        for p in 0..40u64 {
            let mut s = HotSummary {
                total: 1_000 + p,
                floor: p % 7,
                sampled: p == 3,
                unit_variance: 0,
                items: (0..30u64)
                    .map(|i| {
                        let n = (i * 13 + p * 7) % 50 + 7;
                        HotItem {
                            key: format!("k{}", (i * p) % 45).into_bytes(),
                            estimate: n,
                            lower: n - 7 + (p % 7).min(7),
                            upper: n + p % 5,
                            truncated: i == 2,
                            seen: 0,
                        }
                    })
                    .collect(),
            };
            let mut seen = std::collections::HashSet::new();
            s.items.retain(|i| seen.insert(i.key.clone()));
            s.items.sort_by(order);
            s.validate().expect("valid test input");
            parts.push(s);
        }
        let mut stepwise = HotSummary::empty();
        for p in &parts {
            stepwise.add_disjoint(p);
        }
        let once = HotSummary::sum_disjoint(&parts);
        assert_eq!(once, stepwise);
        once.validate().expect("the sum keeps its invariants");
        assert!(once.sampled);
    }

    /// One sampled cell: the hot key captured 3 times at stride 64 (weight
    /// 192), nothing else listed, raw floor 0, `r` = 63.
    fn sampled_cell() -> HotSummary {
        HotSummary {
            total: 600,
            floor: 0,
            sampled: true,
            unit_variance: 63,
            items: vec![HotItem {
                seen: 3,
                ..item("hot", 192)
            }],
        }
    }

    #[test]
    fn settling_a_sum_widens_by_the_summed_variance_not_the_summed_widths() {
        let cells: Vec<HotSummary> = (0..60).map(|_| sampled_cell()).collect();
        let once = HotSummary::sum_disjoint(cells.iter()).settle();
        let each: Vec<HotSummary> = cells.iter().cloned().map(HotSummary::settle).collect();
        let widths = HotSummary::sum_disjoint(each.iter());
        once.validate().expect("valid");
        assert_eq!(once.total, 36_000);
        // One z²·r allowance for a never-captured key, not sixty.
        assert_eq!(once.floor, 9 * 63);
        assert_eq!(widths.floor, 60 * 9 * 63, "94.5 % of the total");
        let (o, w) = (&once.items[0], &widths.items[0]);
        assert_eq!(o.estimate, 60 * 192);
        assert!(o.upper < w.upper && o.lower > w.lower, "{o:?} vs {w:?}");
        // sqrt growth: the upper bound is within 3σ = 3·sqrt(63·11 520) of the weight.
        assert!(o.upper <= 60 * 192 + 3 * 852 + 9 * 63, "{o:?}");
        assert!(o.lower >= 60 * 3, "never below what was certainly seen");
        assert!(!once.items.is_empty() && once.unit_variance == 0 && once.sampled);
    }

    #[test]
    fn settling_a_settled_summary_changes_nothing() {
        let exact = exact(100, &[("hot", 60), ("warm", 30)]);
        assert_eq!(exact.clone().settle(), exact);
        let settled = sampled_cell().settle();
        assert_eq!(settled.clone().settle(), settled);
    }

    #[test]
    fn validate_refuses_a_certain_count_above_the_upper_bound() {
        let mut s = exact(100, &[("hot", 60)]);
        s.items[0].seen = 61;
        assert_eq!(s.validate(), Err(SummaryError::Bounds(0)));
    }

    #[test]
    fn key_disjoint_parts_keep_their_own_bounds_and_the_largest_floor() {
        let mut a = exact(100, &[("a:hot", 60)]);
        a.floor = 10;
        let mut b = exact(50, &[("b:hot", 30)]);
        b.floor = 5;
        b.items.push(HotItem {
            truncated: true,
            ..item("long-prefix", 8)
        });
        let u = HotSummary::union_key_disjoint([&a, &b]);
        u.validate().expect("valid");
        assert_eq!((u.total, u.floor), (150, 10));
        let find = |k: &str| {
            u.items
                .iter()
                .find(|i| i.key == k.as_bytes())
                .expect("listed")
        };
        assert_eq!(find("a:hot").upper, 60, "no floor from the other key range");
        assert_eq!(find("b:hot").upper, 30);
        assert_eq!(
            find("long-prefix").upper,
            18,
            "a cut key may stand for keys of another part"
        );
        let s = HotSummary::sum_disjoint([&a, &b]);
        assert_eq!(
            (s.floor, s.items[0].upper),
            (15, 65),
            "op-disjoint sum, for contrast"
        );
    }
}
