//! The cluster merge of hot keys: reads add up across nodes, writes keep one
//! replica's part per (raft group, leader term), as the matrix merge does.

use std::collections::HashMap;

use super::span::{SpanRef, sum_by_spans};
use super::summary::HotSummary;
use super::wire::{HotKeyEntry, HotKeys, HotPart, NodeHotKeys};
use crate::preview::key_preview;

/// Merges node answers (index 0 = the local node) into the cluster's `k`
/// hottest keys.
///
/// Guarantees: never panics; inputs of another series or capture mode than
/// the first are left out with a warning; read parts of every node add up;
/// write parts with the same non-zero (group, term) count the same writes, so
/// only the part with the largest total is kept (ties: the earlier input);
/// parts of unknown identity (group or term 0) keep the largest per group, as
/// the matrix's legacy fallback does. Kept parts whose key spans
/// ([`HotPart::spans`]) are disjoint combine key-disjointly (a key lies in one
/// span only, so an unlisted key is bounded by one group's floor); parts
/// without a span, or whose spans overlap, add up. Totals are exact for what was counted;
/// each key's `lower`/`upper` bound its count in the merged traffic, and any
/// unlisted key is at most `floor` (sampled parts are added in captured
/// weight and settled once, [`HotSummary::settle`], so the bounds hold with
/// the documented confidence for the whole answer, not per part). The result does not depend on input order
/// except through ties and warnings.
#[must_use = "returns the merged hot keys"]
pub fn merge_hot_keys(inputs: &[NodeHotKeys], k: usize) -> HotKeys {
    let mut warnings = Vec::new();
    let Some(first) = inputs.first() else {
        return HotKeys {
            series: crate::matrix::Series::Writes,
            mode: super::wire::HotKeyMode::default(),
            keys: Vec::new(),
            total: 0,
            floor: 0,
            sampled: false,
            warnings,
        };
    };
    let (series, mode) = (first.series, first.mode);
    // Read parts, summed in one pass at the end (repeated `add_disjoint` is
    // quadratic in the number of parts).
    let mut reads: Vec<&HotPart> = Vec::new();
    // (group, term) -> the kept part.
    let mut writes: HashMap<(u64, u64), &HotPart> = HashMap::new();
    for (i, node) in inputs.iter().enumerate() {
        let name = node.node_id.clone().unwrap_or_else(|| format!("input {i}"));
        if node.series != series {
            warnings.push(format!(
                "{name}: answered series {} instead of {series}; left out",
                node.series
            ));
            continue;
        }
        if node.mode != mode {
            warnings.push(format!(
                "{name}: captures keys in mode {} but the cluster answer is {mode}; left out",
                node.mode
            ));
            continue;
        }
        for part in &node.parts {
            if !series.is_write() {
                reads.push(part);
                continue;
            }
            // Unknown identity: one slot per group (term 0), largest kept.
            let id = if part.group == 0 || part.term == 0 {
                (part.group, 0)
            } else {
                (part.group, part.term)
            };
            match writes.get(&id) {
                Some(kept) if kept.summary.total >= part.summary.total => {}
                _ => {
                    writes.insert(id, part);
                }
            }
        }
    }
    let mut ids: Vec<_> = writes.into_iter().collect();
    ids.sort_by_key(|(id, _)| *id);
    reads.extend(ids.into_iter().map(|(_, part)| part));
    // Parts of disjoint key spans (other raft groups' ranges, other nodes'
    // rows) combine key-disjointly; the rest add up. Settled once, on the
    // whole sum: sampling errors of the parts add up in variance, so the
    // interval is that of the summed weight.
    let ranges: Vec<(SpanRef<'_>, usize)> = reads
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.spans.iter().map(move |s| (s.as_ref(), i)))
        .collect();
    let summaries: Vec<&HotSummary> = reads.iter().map(|p| &p.summary).collect();
    let mut sum = sum_by_spans(ranges, &summaries).settle();
    sum.trim(k);
    let total = sum.total;
    let keys = sum
        .items
        .into_iter()
        .map(|item| HotKeyEntry {
            preview: key_preview(&item.key),
            share: if total == 0 {
                0.0
            } else {
                item.estimate as f64 / total as f64
            },
            estimate: item.estimate,
            lower: item.lower,
            upper: item.upper,
            truncated: item.truncated,
            key: item.key,
        })
        .collect();
    HotKeys {
        series,
        mode,
        keys,
        total,
        floor: sum.floor,
        sampled: sum.sampled,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotkeys::summary::HotItem;
    use crate::hotkeys::wire::{HotKeyMode, HotPart};
    use crate::matrix::Series;

    fn part(group: u64, term: u64, total: u64, keys: &[(&str, u64)]) -> HotPart {
        HotPart {
            group,
            term,
            summary: HotSummary {
                total,
                floor: 0,
                sampled: false,
                unit_variance: 0,
                items: keys
                    .iter()
                    .map(|(k, n)| HotItem {
                        key: k.as_bytes().to_vec(),
                        estimate: *n,
                        lower: *n,
                        upper: *n,
                        truncated: false,
                        seen: 0,
                    })
                    .collect(),
            },
            spans: Vec::new(),
        }
    }

    fn node(id: &str, series: Series, parts: Vec<HotPart>) -> NodeHotKeys {
        NodeHotKeys {
            series,
            mode: HotKeyMode::Raw,
            node_id: Some(id.into()),
            parts,
        }
    }

    #[test]
    fn replicas_of_one_term_count_once_and_terms_add_up() {
        let a = node(
            "n1",
            Series::Writes,
            vec![
                part(1, 5, 100, &[("hot", 90)]),
                part(1, 6, 10, &[("hot", 10)]),
            ],
        );
        let b = node("n2", Series::Writes, vec![part(1, 5, 100, &[("hot", 90)])]);
        let m = merge_hot_keys(&[a, b], 10);
        assert_eq!(m.total, 110);
        assert_eq!(m.keys[0].estimate, 100);
        assert!((m.keys[0].share - 100.0 / 110.0).abs() < 1e-9);
    }

    #[test]
    fn parts_of_disjoint_key_spans_do_not_lend_each_other_their_floors() {
        let spanned = |group, start: &str, end: &str, floor, key: &str, n| {
            let mut p = part(group, 1, 1_000, &[(key, n)]);
            p.summary.floor = floor;
            p.spans = vec![crate::hotkeys::KeySpan {
                start: start.as_bytes().to_vec(),
                end: Some(end.as_bytes().to_vec()),
            }];
            p
        };
        let n1 = node(
            "n1",
            Series::Writes,
            vec![
                spanned(1, "a", "h", 300, "a:hot", 400),
                spanned(2, "h", "p", 200, "h:x", 50),
                spanned(3, "p", "z", 100, "p:x", 50),
            ],
        );
        let m = merge_hot_keys(std::slice::from_ref(&n1), 10);
        assert_eq!(m.total, 3_000);
        assert_eq!(m.floor, 300, "an unlisted key lies in one group's range");
        assert_eq!(m.keys[0].key, b"a:hot");
        assert_eq!(m.keys[0].upper, 400, "no other group's floor joins it");
        // Without spans the same parts add their floors to every key.
        let mut bare = n1;
        for p in &mut bare.parts {
            p.spans.clear();
        }
        let m = merge_hot_keys(&[bare], 10);
        assert_eq!((m.floor, m.keys[0].upper), (600, 700));
    }

    #[test]
    fn reads_of_every_node_add_up() {
        let a = node("n1", Series::Reads, vec![part(0, 0, 50, &[("k", 50)])]);
        let b = node("n2", Series::Reads, vec![part(0, 0, 30, &[("k", 30)])]);
        let m = merge_hot_keys(&[a, b], 10);
        assert_eq!((m.total, m.keys[0].estimate), (80, 80));
    }

    #[test]
    fn an_input_of_another_mode_is_left_out_with_a_warning() {
        let a = node("n1", Series::Reads, vec![part(0, 0, 50, &[("k", 50)])]);
        let mut b = node("n2", Series::Reads, vec![part(0, 0, 30, &[("k", 30)])]);
        b.mode = HotKeyMode::Hashed;
        let m = merge_hot_keys(&[a, b], 10);
        assert_eq!(m.total, 50);
        assert_eq!(m.warnings.len(), 1);
    }
}
