//! Answering a [`HotKeyQuery`] from the local history.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::query::MatrixQuery;
use super::wire::Series;
use crate::history::{CellHot, History};
use crate::hotkeys::{
    HotKeyMode, HotKeyQuery, HotPart, HotSummary, KeySpan, MAX_HOT_PARTS, NodeHotKeys, SpanRef,
    compact_spans, sum_by_spans,
};

/// Summaries collected before they are summed: borrowed from the history
/// where no key filter applies, so a wide query copies nothing per cell.
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
    rows: rustc_hash::FxHashMap<u32, RowAcc<'h>>,
    /// Summaries held in `rows`, for the memory bound.
    pending: usize,
    /// What an earlier fold of very many rows left: it spans every key, so
    /// the rest is added to it op-disjointly.
    folded: Option<HotSummary>,
    /// The key ranges of the rows combined so far.
    spans: Vec<SpanRef<'h>>,
}

#[derive(Default)]
struct RowAcc<'h> {
    pending: Vec<Cow<'h, HotSummary>>,
    uncaptured: u64,
}

impl<'h> Acc<'h> {
    fn add(&mut self, row: u32, exact: u64, hot: Option<Cow<'h, HotSummary>>, fold: Fold<'h>) {
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
                let mut sum = HotSummary::sum_disjoint(r.pending.iter().map(|c| c.as_ref()));
                sum.trim(4 * f.keep);
                r.pending.clear();
                r.pending.push(Cow::Owned(sum));
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
                let mut sum = HotSummary::sum_disjoint(r.pending.iter().map(|c| c.as_ref()));
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

/// `hot` without the keys outside `[start, end)` (raw mode only: hashed keys
/// are not ordered like the keys they stand for). Nothing else changes: the
/// dropped keys' traffic stays in the total, as the row's does.
fn in_range(hot: &HotSummary, start: Option<&[u8]>, end: Option<&[u8]>) -> Option<HotSummary> {
    let outside = |key: &[u8], truncated: bool| {
        let before = start.is_some_and(|s| key < s && !(truncated && s.starts_with(key)));
        let after = end.is_some_and(|e| key >= e);
        before || after
    };
    if !hot.items.iter().any(|i| outside(&i.key, i.truncated)) {
        return None;
    }
    let mut h = hot.clone();
    h.items.retain(|i| !outside(&i.key, i.truncated));
    Some(h)
}

/// `h`'s summary, without keys outside the key range when `filter`.
fn pick<'c>(
    h: Option<&'c CellHot>,
    filter: bool,
    ks: Option<&[u8]>,
    ke: Option<&[u8]>,
) -> Option<Cow<'c, HotSummary>> {
    let h = h?;
    let filtered = if filter {
        in_range(&h.summary, ks, ke)
    } else {
        None
    };
    Some(filtered.map_or(Cow::Borrowed(&h.summary), Cow::Owned))
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
    // The tier a matrix of this window reads, so keys and counts agree with it.
    let tier = history.choose_tier(
        query.from_unix_ms,
        query.to_unix_ms,
        crate::history::MAX_QUERY_COLUMNS,
    );
    for col in history.tier_range(tier, query.from_unix_ms, query.to_unix_ms) {
        // Cells and their summaries are both in cell order: one cursor walks the
        // summaries alongside the cells (two binary searches per cell were 40 % of a
        // wide query, docs/PERFORMANCE.md).
        let entries = col.hot_entries();
        let mut cursor = 0usize;
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
            while entries.get(cursor).is_some_and(|(c, _)| (*c as usize) < i) {
                cursor += 1;
            }
            let rest = entries.get(cursor..).unwrap_or(&[]);
            let hot = &rest[..rest.iter().take_while(|(c, _)| *c as usize == i).count()];
            let find = |g: u64, t: u64| -> Option<&CellHot> {
                hot.iter()
                    .map(|(_, h)| h)
                    .find(|h| h.series == query.series && (h.group, h.term) == (g, t))
            };
            if query.series.is_write() {
                col.for_each_lane(i, |g, t, w, wb| {
                    let exact = if bytes { wb } else { w };
                    if exact == 0 {
                        return;
                    }
                    let s = pick(find(g, t), filter_keys, ks, ke);
                    writes.entry((g, t)).or_default().add(row, exact, s, fold);
                });
            } else {
                let (r, rb) = col.reads_of(i);
                let exact = if bytes { rb } else { r };
                if exact == 0 {
                    continue;
                }
                let s = pick(find(0, 0), filter_keys, ks, ke);
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
                rest.add(WHOLE_PART, s.total, Some(Cow::Owned(s)), fold);
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
