//! Answering a [`HotKeyQuery`] from the local history.

use std::collections::BTreeMap;

use super::query::MatrixQuery;
use super::wire::Series;
use crate::history::History;
use crate::hotkeys::{
    HotKeyMode, HotKeyQuery, HotPart, HotSummary, KeySpan, MAX_HOT_PARTS, NodeHotKeys, SpanRef,
    compact_spans, sum_by_spans,
};

/// Summaries collected before they are summed. Each is decoded from its
/// packed column and owned by the query (the history keeps no decoded
/// form), so this also bounds the query's decoded memory.
const MAX_PENDING_SUMMARIES: usize = 65_536;

/// One part being summed: per row, the captured summaries plus the traffic
/// no summary covers (bounded by its total alone). Summed in one pass at the
/// end, which is linear in the listed keys; adding cell by cell re-sorted the
/// running sum every time and made a one-hour view of a busy node cost
/// seconds.
///
/// Summaries of rows whose key ranges overlap (the same row over time, or
/// rows before and after a split) count traffic that may be of the same
/// keys, so they are added op-disjointly ([`HotSummary::sum_disjoint`]);
/// groups of rows with disjoint key ranges hold disjoint keys, so they are
/// combined with [`HotSummary::union_key_disjoint`], whose floor is the
/// largest group's, not the sum over every row (which made an hour of a
/// many-row view report a floor of a third of the total).
#[derive(Default)]
struct Acc<'h> {
    rows: rustc_hash::FxHashMap<u32, RowAcc>,
    /// Summaries held in `rows`, for the memory bound.
    pending: usize,
    /// What an earlier fold of very many rows left: it spans every key, so
    /// the rest is added to it op-disjointly.
    folded: Option<HotSummary>,
    /// The key ranges of the rows combined so far.
    spans: Vec<SpanRef<'h>>,
}

#[derive(Default)]
struct RowAcc {
    pending: Vec<HotSummary>,
    uncaptured: u64,
}

impl<'h> Acc<'h> {
    fn add(&mut self, row: u32, exact: u64, hot: Option<HotSummary>, fold: Fold<'h>) {
        let r = self.rows.entry(row).or_default();
        let Some(h) = hot else {
            r.uncaptured = r.uncaptured.saturating_add(exact);
            return;
        };
        r.uncaptured = r.uncaptured.saturating_add(exact.saturating_sub(h.total));
        r.pending.push(h);
        self.pending += 1;
        // Bounded memory for very wide queries: fold what is pending into
        // trimmed summaries (trimming is honest: a dropped key's upper bound
        // joins the floor).
        if self.pending >= MAX_PENDING_SUMMARIES {
            self.fold(fold);
        }
    }

    /// Sums each row's pending summaries into one, trimmed to `4·keep`; if
    /// that still leaves more than `MAX_PENDING_SUMMARIES / 2` rows, combines
    /// all of them into `folded`.
    fn fold(&mut self, f: Fold<'h>) {
        for r in self.rows.values_mut() {
            if r.pending.len() > 1 {
                let mut sum = HotSummary::sum_disjoint(r.pending.iter());
                sum.trim(4 * f.keep);
                r.pending.clear();
                r.pending.push(sum);
            }
        }
        self.pending = self.rows.len();
        if self.rows.len() > MAX_PENDING_SUMMARIES / 2 {
            let mut all = self.combine(f);
            all.trim(4 * f.keep);
            self.folded = Some(all);
            self.pending = 0;
        }
    }

    /// Empties `rows` into one summary: rows summed, row groups with
    /// overlapping key ranges summed, groups combined key-disjointly, and
    /// added to `folded`.
    fn combine(&mut self, f: Fold<'h>) -> HotSummary {
        let sums: Vec<(u32, HotSummary)> = self
            .rows
            .drain()
            .map(|(row, r)| {
                let mut sum = HotSummary::sum_disjoint(r.pending.iter());
                if r.uncaptured > 0 {
                    sum.add_disjoint(&HotSummary {
                        total: r.uncaptured,
                        floor: r.uncaptured,
                        ..HotSummary::default()
                    });
                }
                (row, sum)
            })
            .collect();
        let ranges: Vec<(SpanRef<'h>, usize)> = sums
            .iter()
            .enumerate()
            .map(|(i, (row, _))| (f.span(*row), i))
            .collect();
        self.spans.extend(ranges.iter().map(|(s, _)| *s));
        let summaries: Vec<&HotSummary> = sums.iter().map(|(_, s)| s).collect();
        let union = sum_by_spans(ranges, &summaries);
        match self.folded.take() {
            Some(before) => HotSummary::sum_disjoint([&before, &union]),
            None => union,
        }
    }

    /// The part's summary, trimmed to `keep`, and its rows' key ranges
    /// ([`compact_spans`]).
    fn finish(mut self, f: Fold<'h>) -> (HotSummary, Vec<KeySpan>) {
        let mut sum = self.combine(f);
        sum.trim(f.keep);
        (sum, compact_spans(std::mem::take(&mut self.spans)))
    }
}

/// What folding needs besides the summaries: the rows' key ranges and the
/// number of keys asked for.
#[derive(Clone, Copy)]
struct Fold<'h> {
    catalog: &'h crate::history::RowCatalog,
    keep: usize,
}

impl<'h> Fold<'h> {
    /// `row`'s key range; every key for a row the catalog does not know
    /// (such as `WHOLE_PART`), so it is summed with everything.
    fn span(&self, row: u32) -> SpanRef<'h> {
        self.catalog.get(row).map_or(SpanRef::ALL, |m| SpanRef {
            start: &m.start,
            end: m.end.as_deref(),
        })
    }
}

/// The pseudo-row of finished parts folded into another part: no catalog
/// row has this id, so it spans every key.
const WHOLE_PART: u32 = u32::MAX;

/// Drops from `hot` the keys outside `[start, end)` (raw mode only: hashed
/// keys are not ordered like the keys they stand for). Nothing else changes:
/// the dropped keys' traffic stays in the total, as the row's does.
fn keep_in_range(hot: &mut HotSummary, start: Option<&[u8]>, end: Option<&[u8]>) {
    let outside = |key: &[u8], truncated: bool| {
        let before = start.is_some_and(|s| key < s && !(truncated && s.starts_with(key)));
        let after = end.is_some_and(|e| key >= e);
        before || after
    };
    hot.items.retain(|i| !outside(&i.key, i.truncated));
}

/// The hot keys of `query` (already validated) over the columns and rows it
/// selects. Parts' totals are the exact counts of the selected cells (the
/// matrix's numbers); reads make one part, writes one per (group, term).
pub(crate) fn build(history: &History, query: &HotKeyQuery, mode: HotKeyMode) -> NodeHotKeys {
    let keep = query.k.max(64);
    let rows = MatrixQuery {
        key_start: query.key_start.clone(),
        key_end: query.key_end.clone(),
        ..MatrixQuery::default()
    };
    let (ks, ke) = (query.key_start.as_deref(), query.key_end.as_deref());
    let filter_keys = mode == HotKeyMode::Raw && (ks.is_some() || ke.is_some());
    let bytes = matches!(query.series, Series::ReadBytes | Series::WriteBytes);
    let catalog = &history.catalog;
    let fold = Fold { catalog, keep };
    // Per row: 0 = not looked up yet, 1 = selected, 2 = outside the key range.
    let mut selected = vec![0u8; catalog.capacity()];
    let mut reads = Acc::default();
    let mut writes: BTreeMap<(u64, u64), Acc> = BTreeMap::new();
    // The decoded summaries of the cell being visited: (group, term, summary).
    let mut cell_hot: Vec<(u64, u64, Option<HotSummary>)> = Vec::new();
    // The tier a matrix of this window reads, so keys and counts agree with it.
    let tier = history.choose_tier(
        query.from_unix_ms,
        query.to_unix_ms,
        crate::history::MAX_QUERY_COLUMNS,
    );
    for col in history.tier_range(tier, query.from_unix_ms, query.to_unix_ms) {
        // Cells and their summaries are both in cell order: one cursor walks the
        // summaries alongside the cells (two binary searches per cell were 40 % of a
        // wide query, docs/PERFORMANCE.md), decoding only those of selected cells,
        // of this series. What it decodes moves into the accumulators.
        let mut cursor = col.hot_cursor(query.series);
        for (i, &row) in col.rows.iter().enumerate() {
            let Some(sel) = selected.get_mut(row as usize) else {
                continue;
            };
            if *sel == 0 {
                *sel = match catalog.get(row) {
                    Some(m) if rows.overlaps(&m.start, m.end.as_deref()) => 1,
                    _ => 2,
                };
            }
            if *sel != 1 {
                continue;
            }
            while cursor.next_cell().is_some_and(|c| (c as usize) < i) {
                cursor.skip();
            }
            cell_hot.clear();
            while cursor.next_cell().is_some_and(|c| c as usize == i) {
                match cursor.take() {
                    Some((g, t, mut h)) => {
                        if filter_keys {
                            keep_in_range(&mut h, ks, ke);
                        }
                        cell_hot.push((g, t, Some(h)));
                    }
                    None => break,
                }
            }
            // A cell has one summary per (series, identity) and one lane per
            // identity, so each summary is taken once.
            let mut find = |g: u64, t: u64| -> Option<HotSummary> {
                cell_hot
                    .iter_mut()
                    .find(|e| (e.0, e.1) == (g, t))
                    .and_then(|e| e.2.take())
            };
            if query.series.is_write() {
                col.for_each_lane(i, |g, t, w, wb| {
                    let exact = if bytes { wb } else { w };
                    if exact == 0 {
                        return;
                    }
                    let s = find(g, t);
                    writes.entry((g, t)).or_default().add(row, exact, s, fold);
                });
            } else {
                let (r, rb) = col.reads_of(i);
                let exact = if bytes { rb } else { r };
                if exact == 0 {
                    continue;
                }
                let s = find(0, 0);
                reads.add(row, exact, s, fold);
            }
        }
    }
    let parts = if query.series.is_write() {
        let mut parts: Vec<HotPart> = Vec::with_capacity(writes.len().min(MAX_HOT_PARTS));
        let mut rest = Acc::default();
        let n = writes.len();
        for (idx, ((group, term), acc)) in writes.into_iter().enumerate() {
            // Past the part limit, further identities join the identity-less
            // part (the merge then keeps them per group), never dropped.
            if idx + 1 >= MAX_HOT_PARTS && n > MAX_HOT_PARTS {
                let (s, _) = acc.finish(fold);
                rest.add(WHOLE_PART, s.total, Some(s), fold);
                continue;
            }
            let (summary, spans) = acc.finish(fold);
            parts.push(HotPart {
                group,
                term,
                summary,
                spans,
            });
        }
        if !rest.rows.is_empty() || rest.folded.is_some() {
            // Spans every key (WHOLE_PART): no spans.
            let (s, _) = rest.finish(fold);
            match parts.iter_mut().find(|p| (p.group, p.term) == (0, 0)) {
                Some(p) => {
                    p.summary.add_disjoint(&s);
                    p.summary.trim(keep);
                    p.spans.clear();
                }
                None => parts.push(HotPart {
                    group: 0,
                    term: 0,
                    summary: s,
                    spans: Vec::new(),
                }),
            }
        }
        parts
    } else {
        let (summary, spans) = reads.finish(fold);
        vec![HotPart {
            group: 0,
            term: 0,
            summary,
            spans,
        }]
    };
    NodeHotKeys {
        series: query.series,
        mode,
        node_id: None,
        parts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HistoryTier;
    use crate::history::{CellHot, CellInput, HotLayout, Lanes, RowMeta, WriteLane};
    use crate::hotkeys::{HotItem, MAX_HOT_KEY_BYTES};

    const MINUTE: u64 = 60_000;
    /// A whole ten-minute window.
    const T0: i64 = 1_700_000_400_000;
    const ROWS: u8 = 12;
    const MINUTES: u64 = 90;

    /// A valid summary of `total` over keys of row `row` (1–6 items, some
    /// sampled, a truncated 256-byte key now and then).
    fn summary(row: u8, minute: u64, salt: u64, total: u64) -> HotSummary {
        let n = 1 + (minute + salt) % 6;
        let sampled = (minute + u64::from(row) + salt).is_multiple_of(3);
        let floor = total >> (n + 1);
        let mut items: Vec<HotItem> = (0..n)
            .map(|j| {
                let (key, truncated) = if j == 0 && minute.is_multiple_of(5) {
                    let mut k = vec![row];
                    k.resize(MAX_HOT_KEY_BYTES, 0xaa);
                    (k, true)
                } else {
                    (vec![row, ((minute * 7 + j * 13 + salt) % 50) as u8], false)
                };
                let estimate = (total >> (j + 1)).max(1).min(total);
                let lower = estimate - estimate / 4;
                HotItem {
                    key,
                    estimate,
                    lower,
                    upper: (estimate + floor).min(total),
                    truncated,
                    seen: if sampled { lower / 2 } else { lower },
                }
            })
            .collect();
        items.sort_by(|a, b| {
            (b.estimate, b.upper)
                .cmp(&(a.estimate, a.upper))
                .then_with(|| a.key.cmp(&b.key))
        });
        HotSummary {
            total,
            floor,
            sampled,
            unit_variance: if sampled { 17 } else { 0 },
            items,
        }
    }

    fn cell(h: &mut History, row: u8, minute: u64, extra: u64) -> CellInput {
        let id = h.catalog.acquire(RowMeta {
            bucket_id: format!("route:{row}").into(),
            start: vec![row],
            end: Some(vec![row + 1]),
            aggregate: false,
            route_ids: vec![u64::from(row)],
            route_count: 1,
            group: 1 + u64::from(row % 3),
            generation: 0,
            labels: None,
        });
        let r = u64::from(row);
        let group = 1 + r % 3;
        // The leader term changes at minute 45, inside a ten-minute window.
        let term = 5 + minute / 45;
        let mut lanes = vec![WriteLane {
            group,
            term,
            writes: 1 + (r * minute + extra) % 4,
            write_bytes: 108 * (1 + (r * minute + extra) % 4),
        }];
        if row % 4 == 3 {
            lanes.push(WriteLane {
                group,
                term: term - 1,
                writes: 1,
                write_bytes: 50,
            });
        }
        let reads = 3 + (r + minute + extra) % 5;
        let mut hot = Vec::new();
        // Rows 10 and 11 never have summaries; others miss some windows.
        if row < 10 && !(r + minute).is_multiple_of(7) {
            hot.push(CellHot {
                series: Series::Reads,
                group: 0,
                term: 0,
                summary: summary(row, minute, extra, reads + r % 2),
            });
            hot.push(CellHot {
                series: Series::ReadBytes,
                group: 0,
                term: 0,
                summary: summary(row, minute, extra + 1, 100 * reads),
            });
            for (n, lane) in lanes.iter().enumerate() {
                if n == 1 && minute.is_multiple_of(2) {
                    continue;
                }
                hot.push(CellHot {
                    series: Series::Writes,
                    group: lane.group,
                    term: lane.term,
                    summary: summary(row, minute, extra + 2 + n as u64, lane.writes),
                });
                hot.push(CellHot {
                    series: Series::WriteBytes,
                    group: lane.group,
                    term: lane.term,
                    summary: summary(row, minute, extra + 4 + n as u64, lane.write_bytes),
                });
            }
        }
        CellInput {
            row: id,
            reads_leader: reads,
            reads_follower: r % 2,
            read_bytes: 100 * reads,
            lanes: lanes.into_iter().collect::<Lanes>(),
            hot,
            labels: None,
        }
    }

    /// 90 minutes of 12 rows in a one-minute tier kept 1 h and a ten-minute
    /// tier kept a day, summaries in `layout`.
    fn history(layout: HotLayout) -> History {
        let tiers = [
            HistoryTier {
                step_ms: MINUTE,
                keep_ms: 60 * MINUTE,
            },
            HistoryTier {
                step_ms: 10 * MINUTE,
                keep_ms: 24 * 60 * MINUTE,
            },
        ];
        let mut h = History::with_tiers(&tiers, 100_000).with_hot_layout(layout);
        for m in 0..MINUTES {
            let at = T0 + (m * MINUTE) as i64;
            let cells = (0..ROWS).map(|r| cell(&mut h, r, m, 0)).collect();
            h.push(at, cells);
            if m % 10 == 3 {
                // A second seal of the same window merges into its column.
                let late = vec![cell(&mut h, 0, m, 1), cell(&mut h, 5, m, 1)];
                h.push(at, late);
            }
        }
        h
    }

    #[test]
    fn packed_summaries_answer_hot_key_queries_exactly_as_structs_do() {
        let plain = history(HotLayout::Plain);
        let packed = history(HotLayout::Packed);
        assert!(packed.hot_heap_bytes() * 3 < plain.hot_heap_bytes());
        let at = |m: u64| Some(T0 + (m * MINUTE) as i64);
        let windows = [
            (None, None),
            (at(50), None),
            (at(20), at(80)),
            (at(45), at(47)),
        ];
        let tiers: Vec<usize> = windows
            .iter()
            .map(|&(f, t)| packed.choose_tier(f, t, crate::history::MAX_QUERY_COLUMNS))
            .collect();
        assert!(
            tiers.contains(&0) && tiers.contains(&1),
            "both tiers read: {tiers:?}"
        );
        type Range = (Option<Vec<u8>>, Option<Vec<u8>>);
        let ranges: [Range; 4] = [
            (None, None),
            (Some(vec![3, 20]), Some(vec![6, 0])),
            (Some(vec![2]), None),
            (Some(vec![4, 0xaa]), Some(vec![5])),
        ];
        let mut listed = 0;
        for series in [
            Series::Reads,
            Series::ReadBytes,
            Series::Writes,
            Series::WriteBytes,
        ] {
            for &(from, to) in &windows {
                for (ks, ke) in &ranges {
                    for k in [3, 64] {
                        for mode in [HotKeyMode::Raw, HotKeyMode::Hashed] {
                            let q = HotKeyQuery {
                                series,
                                from_unix_ms: from,
                                to_unix_ms: to,
                                key_start: ks.clone(),
                                key_end: ke.clone(),
                                k,
                            };
                            let want = build(&plain, &q, mode);
                            assert_eq!(build(&packed, &q, mode), want, "{q:?} {mode:?}");
                            listed += want
                                .parts
                                .iter()
                                .map(|p| p.summary.items.len())
                                .sum::<usize>();
                        }
                    }
                }
            }
        }
        assert!(listed > 1_000, "the queries list keys: {listed}");
    }
}
