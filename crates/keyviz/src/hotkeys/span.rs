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

/// The sum of `parts`, each summarising traffic of its span: parts whose
/// spans overlap (transitively) are summed op-disjointly, and those groups,
/// whose spans are pairwise disjoint, are combined key-disjointly. Honest
/// whatever the spans, as long as each part's traffic lies in its span.
/// Sorts `parts` by span start; linear in the listed items otherwise.
pub(crate) fn sum_by_span<S: Borrow<HotSummary>>(mut parts: Vec<(SpanRef<'_>, S)>) -> HotSummary {
    parts.sort_by(|a, b| a.0.start.cmp(b.0.start));
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    let mut end: Option<&[u8]> = None;
    for (i, (span, _)) in parts.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if end.is_none_or(|e| span.start < e) => {
                g.end = i + 1;
                end = match (end, span.end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => {
                groups.push(i..i + 1);
                end = span.end;
            }
        }
    }
    let sums: Vec<Option<HotSummary>> = groups
        .iter()
        .map(|g| {
            (g.len() > 1)
                .then(|| HotSummary::sum_disjoint(parts[g.clone()].iter().map(|(_, s)| s.borrow())))
        })
        .collect();
    HotSummary::union_key_disjoint(
        groups
            .iter()
            .zip(&sums)
            .map(|(g, sum)| sum.as_ref().unwrap_or_else(|| parts[g.start].1.borrow())),
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
        let sum = sum_by_span(vec![
            (span("b", Some("c")), &b),
            (span("a", Some("b")), &a),
            (span("a", Some("a~")), &a2),
        ]);
        sum.validate().expect("valid");
        assert_eq!(sum.total, 300);
        // [a, b) and [a, a~) overlap: floors 10 + 5; [b, c) is apart: 20.
        assert_eq!(sum.floor, 20);
        let a1 = sum.items.iter().find(|i| i.key == b"a:1").expect("listed");
        assert_eq!((a1.lower, a1.upper), (80, 80));
        let b1 = sum.items.iter().find(|i| i.key == b"b:1").expect("listed");
        assert_eq!(b1.upper, 50, "nothing from the other group's floor");
        // A part without a span overlaps everything: all op-disjoint.
        let all = sum_by_span(vec![(span("a", Some("b")), &a), (SpanRef::ALL, &b)]);
        assert_eq!(all.floor, 30);
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
