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
    /// `lower <= estimate <= upper <= total` does not hold for item `i`.
    #[error("hot key {0} has inconsistent bounds (lower <= estimate <= upper <= total broken)")]
    Bounds(usize),
    /// `floor > total`.
    #[error("hot-key floor exceeds the total")]
    Floor,
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
                && item.upper <= self.total)
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
        let (mut total, mut floor, mut sampled) = (0u64, 0u64, false);
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
            for it in &p.items {
                match keys.get_mut(it.key.as_slice()) {
                    Some((acc, listed_floor)) => {
                        acc.estimate = acc.estimate.saturating_add(it.estimate);
                        acc.lower = acc.lower.saturating_add(it.lower);
                        acc.upper = acc.upper.saturating_add(it.upper);
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
            items,
        }
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
        }
    }

    fn exact(total: u64, items: &[(&str, u64)]) -> HotSummary {
        let mut s = HotSummary {
            total,
            floor: 0,
            sampled: false,
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
                items: (0..30u64)
                    .map(|i| {
                        let n = (i * 13 + p * 7) % 50 + 7;
                        HotItem {
                            key: format!("k{}", (i * p) % 45).into_bytes(),
                            estimate: n,
                            lower: n - 7 + (p % 7).min(7),
                            upper: n + p % 5,
                            truncated: i == 2,
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
}
