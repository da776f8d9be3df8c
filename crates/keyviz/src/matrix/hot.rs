//! Answering a [`HotKeyQuery`] from the local history.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::query::MatrixQuery;
use super::wire::Series;
use crate::history::{CellHot, History};
use crate::hotkeys::{HotKeyMode, HotKeyQuery, HotPart, HotSummary, MAX_HOT_PARTS, NodeHotKeys};

/// Summaries collected before they are summed: borrowed from the history
/// where no key filter applies, so a wide query copies nothing per cell.
const MAX_PENDING_SUMMARIES: usize = 65_536;

/// The key range a pending summary covers: its row's, or the hull of the
/// rows folded into it. `end` `None` is unbounded.
#[derive(Clone, Copy)]
struct Span<'h> {
    start: &'h [u8],
    end: Option<&'h [u8]>,
}

impl Span<'_> {
    const ALL: Span<'static> = Span {
        start: &[],
        end: None,
    };
}

/// One part being summed: the captured summaries, each with its row's key
/// range, plus, per row, the traffic no summary covers (bounded by its total
/// alone). Summed in one pass at the end, which is linear in the listed
/// keys; adding cell by cell re-sorted the running sum every time and made a
/// one-hour view of a busy node cost seconds.
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
    pending: Vec<(Span<'h>, Cow<'h, HotSummary>)>,
    uncaptured: rustc_hash::FxHashMap<u32, u64>,
}

impl<'h> Acc<'h> {
    fn add(
        &mut self,
        row: u32,
        span: Span<'h>,
        exact: u64,
        hot: Option<Cow<'h, HotSummary>>,
        keep: usize,
    ) {
        let Some(h) = hot else {
            *self.uncaptured.entry(row).or_default() += exact;
            return;
        };
        let rest = exact.saturating_sub(h.total);
        if rest > 0 {
            *self.uncaptured.entry(row).or_default() += rest;
        }
        self.pending.push((span, h));
        // Bounded memory for very wide queries: fold what is pending, per
        // group of overlapping rows, into trimmed summaries (trimming is
        // honest: a dropped key's upper bound joins the floor).
        if self.pending.len() >= MAX_PENDING_SUMMARIES {
            self.fold(4 * keep);
        }
    }

    /// Replaces the pending summaries by one trimmed sum per group of rows
    /// with overlapping key ranges; past `MAX_PENDING_SUMMARIES / 2` groups,
    /// by their key-disjoint union (spanning every key: anything added later
    /// is summed with it op-disjointly, which is always honest).
    fn fold(&mut self, keep: usize) {
        let mut groups = group_overlapping(std::mem::take(&mut self.pending));
        for (_, g) in &mut groups {
            g.trim(keep);
        }
        if groups.len() > MAX_PENDING_SUMMARIES / 2 {
            let mut all = HotSummary::union_key_disjoint(groups.iter().map(|(_, g)| g));
            all.trim(keep);
            self.pending.push((Span::ALL, Cow::Owned(all)));
        } else {
            self.pending
                .extend(groups.into_iter().map(|(span, g)| (span, Cow::Owned(g))));
        }
    }

    fn finish(mut self, catalog: &'h crate::history::RowCatalog, keep: usize) -> HotSummary {
        for (row, n) in std::mem::take(&mut self.uncaptured) {
            let span = catalog.get(row).map_or(Span::ALL, |m| Span {
                start: &m.start,
                end: m.end.as_deref(),
            });
            self.pending.push((
                span,
                Cow::Owned(HotSummary {
                    total: n,
                    floor: n,
                    ..HotSummary::default()
                }),
            ));
        }
        let groups = group_overlapping(self.pending);
        let mut sum = HotSummary::union_key_disjoint(groups.iter().map(|(_, g)| g));
        sum.trim(keep);
        sum
    }
}

/// Sums `pending` per group of entries whose key ranges overlap (transitively),
/// returning each group's hull and op-disjoint sum. Sorts by start key.
fn group_overlapping<'h>(
    mut pending: Vec<(Span<'h>, Cow<'h, HotSummary>)>,
) -> Vec<(Span<'h>, HotSummary)> {
    pending.sort_by(|a, b| a.0.start.cmp(b.0.start));
    let mut out = Vec::new();
    let mut i = 0;
    while i < pending.len() {
        let mut hull = pending[i].0;
        let mut j = i + 1;
        while j < pending.len() && hull.end.is_none_or(|e| pending[j].0.start < e) {
            hull.end = match (hull.end, pending[j].0.end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            j += 1;
        }
        let sum = HotSummary::sum_disjoint(pending[i..j].iter().map(|(_, c)| c.as_ref()));
        out.push((hull, sum));
        i = j;
    }
    out
}

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
            let span = catalog.get(row).map_or(Span::ALL, |m| Span {
                start: &m.start,
                end: m.end.as_deref(),
            });
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
                    writes
                        .entry((g, t))
                        .or_default()
                        .add(row, span, exact, s, keep);
                });
            } else {
                let (r, rb) = col.reads_of(i);
                let exact = if bytes { rb } else { r };
                if exact == 0 {
                    continue;
                }
                let s = pick(find(0, 0), filter_keys, ks, ke);
                reads.add(row, span, exact, s, keep);
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
                let s = acc.finish(catalog, keep);
                rest.add(u32::MAX, Span::ALL, s.total, Some(Cow::Owned(s)), keep);
                continue;
            }
            parts.push(HotPart {
                group,
                term,
                summary: acc.finish(catalog, keep),
            });
        }
        if !rest.pending.is_empty() || !rest.uncaptured.is_empty() {
            let s = rest.finish(catalog, keep);
            match parts.iter_mut().find(|p| (p.group, p.term) == (0, 0)) {
                Some(p) => {
                    p.summary.add_disjoint(&s);
                    p.summary.trim(keep);
                }
                None => parts.push(HotPart {
                    group: 0,
                    term: 0,
                    summary: s,
                }),
            }
        }
        parts
    } else {
        vec![HotPart {
            group: 0,
            term: 0,
            summary: reads.finish(catalog, keep),
        }]
    };
    NodeHotKeys {
        series: query.series,
        mode,
        node_id: None,
        parts,
    }
}
