//! Key spans of hot-key summaries, and adding summaries up by them.
//!
//! A summary counts the traffic of some key range (a row, the hull of a
//! part's rows). Summaries whose ranges overlap may count the same keys, so
//! they add op-disjointly ([`HotSummary::sum_disjoint`]); groups of summaries
//! with disjoint ranges hold disjoint keys and combine key-disjointly
//! ([`HotSummary::union_key_disjoint`]): a key not listed is in one group
//! only, so the floor is one group's, not the sum of all of them.

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::summary::{HotSummary, SummaryError};

/// Longest boundary key a [`KeySpan`] accepted from outside may have.
pub const MAX_SPAN_KEY_BYTES: usize = 4_096;

/// The key range `[start, end)` a hot-key part's traffic lies in (`end`
/// `None`: unbounded). Only ever narrows what the merge may assume: a part
/// without a span is taken to span every key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpan {
    /// First key of the range (inclusive).
    #[serde(with = "super::summary::b64")]
    pub start: Vec<u8>,
    /// First key after the range; `None` when unbounded.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub end: Option<Vec<u8>>,
}

impl KeySpan {
    /// Checks the span is a non-empty range of bounded keys.
    ///
    /// # Errors
    /// [`SummaryError::Span`] when a key is longer than
    /// [`MAX_SPAN_KEY_BYTES`] or `end <= start`.
    pub fn validate(&self) -> Result<(), SummaryError> {
        let long = self.start.len() > MAX_SPAN_KEY_BYTES
            || self
                .end
                .as_ref()
                .is_some_and(|e| e.len() > MAX_SPAN_KEY_BYTES);
        let empty = self.end.as_ref().is_some_and(|e| *e <= self.start);
        if long || empty {
            return Err(SummaryError::Span);
        }
        Ok(())
    }

    pub(crate) fn as_ref(&self) -> SpanRef<'_> {
        SpanRef {
            start: &self.start,
            end: self.end.as_deref(),
        }
    }
}

/// A borrowed [`KeySpan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanRef<'a> {
    pub(crate) start: &'a [u8],
    pub(crate) end: Option<&'a [u8]>,
}

impl<'a> SpanRef<'a> {
    /// Every key.
    pub(crate) const ALL: SpanRef<'static> = SpanRef {
        start: &[],
        end: None,
    };

    /// The smallest span holding both.
    pub(crate) fn hull(self, other: SpanRef<'a>) -> SpanRef<'a> {
        SpanRef {
            start: self.start.min(other.start),
            end: match (self.end, other.end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            },
        }
    }

    pub(crate) fn to_owned(self) -> KeySpan {
        KeySpan {
            start: self.start.to_vec(),
            end: self.end.map(<[u8]>::to_vec),
        }
    }
}

/// Most key ranges one [`HotPart`](super::HotPart) lists; a part whose rows
/// form more ranges lists hulls of neighbouring ones (a superset, so still
/// honest).
pub const MAX_PART_SPANS: usize = 1_024;

/// `spans` sorted, with overlapping and touching ranges joined, then cut to
/// at most [`MAX_PART_SPANS`] by taking hulls of consecutive ranges.
pub(crate) fn compact_spans(mut spans: Vec<SpanRef<'_>>) -> Vec<KeySpan> {
    spans.sort_by(|a, b| a.start.cmp(b.start));
    let mut joined: Vec<SpanRef<'_>> = Vec::with_capacity(spans.len().min(1024));
    for s in spans {
        match joined.last_mut() {
            Some(last) if last.end.is_none_or(|e| s.start <= e) => *last = last.hull(s),
            _ => joined.push(s),
        }
    }
    let per = joined.len().div_ceil(MAX_PART_SPANS).max(1);
    joined
        .chunks(per)
        .filter_map(|c| c.iter().copied().reduce(SpanRef::hull))
        .map(SpanRef::to_owned)
        .collect()
}

/// The sum of `parts`, each summarising traffic of the key ranges that
/// `ranges` lists for it (`(range, part index)`; a part with no range spans
/// every key): parts whose ranges overlap, directly or through other parts,
/// are summed op-disjointly, and those groups, whose keys are pairwise
/// disjoint, are combined key-disjointly. Honest whatever the ranges, as
/// long as each part's traffic lies in its ranges. Sorts `ranges`; linear in
/// the listed items otherwise.
pub(crate) fn sum_by_spans<S: Borrow<HotSummary>>(
    mut ranges: Vec<(SpanRef<'_>, usize)>,
    parts: &[S],
) -> HotSummary {
    let mut listed = vec![false; parts.len()];
    for (_, i) in &ranges {
        if let Some(l) = listed.get_mut(*i) {
            *l = true;
        }
    }
    ranges.retain(|(_, i)| *i < parts.len());
    ranges.extend(
        listed
            .iter()
            .enumerate()
            .filter(|(_, l)| !**l)
            .map(|(i, _)| (SpanRef::ALL, i)),
    );
    ranges.sort_by(|a, b| a.0.start.cmp(b.0.start));
    // Union-find over parts: a sweep joins each range's part to the part of
    // the running overlap group it starts inside.
    let mut parent: Vec<usize> = (0..parts.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut run: Option<(Option<&[u8]>, usize)> = None;
    for (span, i) in &ranges {
        run = match run {
            Some((end, owner)) if end.is_none_or(|e| span.start < e) => {
                let (a, b) = (root(&mut parent, owner), root(&mut parent, *i));
                parent[b] = a;
                let end = match (end, span.end) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    _ => None,
                };
                Some((end, owner))
            }
            _ => Some((span.end, *i)),
        };
    }
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..parts.len() {
        let r = root(&mut parent, i);
        members.entry(r).or_default().push(i);
    }
    let sums: Vec<Option<HotSummary>> = members
        .values()
        .map(|m| {
            (m.len() > 1).then(|| HotSummary::sum_disjoint(m.iter().map(|&i| parts[i].borrow())))
        })
        .collect();
    HotSummary::union_key_disjoint(
        members
            .values()
            .zip(&sums)
            .map(|(m, sum)| sum.as_ref().unwrap_or_else(|| parts[m[0]].borrow())),
    )
}

mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::super::summary::b64::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::super::summary::b64")] Vec<u8>);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotkeys::HotItem;

    fn part(total: u64, floor: u64, key: &str, n: u64) -> HotSummary {
        HotSummary {
            total,
            floor,
            items: vec![HotItem {
                key: key.as_bytes().to_vec(),
                estimate: n,
                lower: n,
                upper: n,
                truncated: false,
                seen: 0,
            }],
            ..HotSummary::default()
        }
    }

    fn span<'a>(start: &'a str, end: Option<&'a str>) -> SpanRef<'a> {
        SpanRef {
            start: start.as_bytes(),
            end: end.map(str::as_bytes),
        }
    }

    #[test]
    fn disjoint_spans_combine_key_disjointly_and_overlapping_ones_add_up() {
        let a = part(100, 10, "a:1", 50);
        let b = part(100, 20, "b:1", 50);
        let a2 = part(100, 5, "a:1", 30);
        let parts = [&b, &a, &a2];
        let sum = sum_by_spans(
            vec![
                (span("b", Some("c")), 0),
                (span("a", Some("b")), 1),
                (span("a", Some("a~")), 2),
            ],
            &parts,
        );
        sum.validate().expect("valid");
        assert_eq!(sum.total, 300);
        // [a, b) and [a, a~) overlap: floors 10 + 5; [b, c) is apart: 20.
        assert_eq!(sum.floor, 20);
        let a1 = sum.items.iter().find(|i| i.key == b"a:1").expect("listed");
        assert_eq!((a1.lower, a1.upper), (80, 80));
        let b1 = sum.items.iter().find(|i| i.key == b"b:1").expect("listed");
        assert_eq!(b1.upper, 50, "nothing from the other group's floor");
        // A part without a span overlaps everything: all op-disjoint.
        let all = sum_by_spans(vec![(span("a", Some("b")), 0)], &[&a, &b]);
        assert_eq!(all.floor, 30);
        // Interleaved ranges (a raft group owning [a, b) and [c, d), another
        // [b, c)) stay apart; a third part overlapping both joins them.
        let c = part(100, 7, "c:1", 5);
        let split = sum_by_spans(
            vec![
                (span("a", Some("b")), 0),
                (span("c", Some("d")), 0),
                (span("b", Some("c")), 1),
            ],
            &[&a, &b],
        );
        assert_eq!(split.floor, 20);
        let bridged = sum_by_spans(
            vec![
                (span("a", Some("b")), 0),
                (span("c", Some("d")), 0),
                (span("b", Some("c")), 1),
                (span("a", Some("bb")), 2),
            ],
            &[&a, &b, &c],
        );
        assert_eq!(bridged.floor, 37, "a and b now add up with c");
    }

    #[test]
    fn compacting_joins_touching_ranges_and_caps_their_number() {
        let keys: Vec<String> = (0..3_000).map(|i| format!("k{i:04}")).collect();
        // Every other key range: 1 500 separate ranges.
        let spans: Vec<SpanRef<'_>> = (0..1_500)
            .map(|i| span(&keys[2 * i], Some(&keys[2 * i + 1])))
            .collect();
        let c = compact_spans(spans);
        assert!(c.len() <= MAX_PART_SPANS);
        assert_eq!(c[0].start, b"k0000");
        assert_eq!(
            c.last().and_then(|s| s.end.clone()),
            Some(b"k2999".to_vec())
        );
        let touching = compact_spans(vec![span("a", Some("b")), span("b", Some("c"))]);
        assert_eq!(touching.len(), 1);
    }

    #[test]
    fn spans_refuse_empty_ranges_and_huge_keys() {
        let ok = KeySpan {
            start: b"a".to_vec(),
            end: Some(b"b".to_vec()),
        };
        assert!(ok.validate().is_ok());
        let empty = KeySpan {
            end: Some(b"a".to_vec()),
            ..ok.clone()
        };
        assert_eq!(empty.validate(), Err(SummaryError::Span));
        let huge = KeySpan {
            start: vec![b'x'; MAX_SPAN_KEY_BYTES + 1],
            end: None,
        };
        assert_eq!(huge.validate(), Err(SummaryError::Span));
        let json = serde_json::to_string(&ok).expect("encodes");
        assert_eq!(serde_json::from_str::<KeySpan>(&json).expect("decodes"), ok);
        let open: KeySpan = serde_json::from_str(r#"{"start":""}"#).expect("decodes");
        assert_eq!(open.end, None);
    }
}
