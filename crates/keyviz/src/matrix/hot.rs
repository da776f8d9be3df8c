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

/// One part being summed: the captured summaries plus the traffic no summary
/// covers (bounded by its total alone). Summed in one pass at the end
/// ([`HotSummary::sum_disjoint`]), which is linear in the listed keys; adding
/// cell by cell re-sorted the running sum every time and made a one-hour view
/// of a busy node cost seconds.
#[derive(Default)]
struct Acc<'h> {
    pending: Vec<Cow<'h, HotSummary>>,
    uncaptured: u64,
}

impl<'h> Acc<'h> {
    fn add(&mut self, exact: u64, hot: Option<Cow<'h, HotSummary>>, keep: usize) {
        let Some(h) = hot else {
            self.uncaptured = self.uncaptured.saturating_add(exact);
            return;
        };
        self.uncaptured = self
            .uncaptured
            .saturating_add(exact.saturating_sub(h.total));
        self.pending.push(h);
        // Bounded memory for very wide queries: fold what is pending into one
        // trimmed summary (trimming is honest: a dropped key's upper bound
        // joins the floor).
        if self.pending.len() >= MAX_PENDING_SUMMARIES {
            let mut folded = HotSummary::sum_disjoint(self.pending.iter().map(|c| c.as_ref()));
            folded.trim(4 * keep);
            self.pending.clear();
            self.pending.push(Cow::Owned(folded));
        }
    }

    fn finish(mut self, keep: usize) -> HotSummary {
        if self.uncaptured > 0 {
            self.pending.push(Cow::Owned(HotSummary {
                total: self.uncaptured,
                floor: self.uncaptured,
                sampled: false,
                unit_variance: 0,
                items: Vec::new(),
            }));
        }
        let mut sum = HotSummary::sum_disjoint(self.pending.iter().map(|c| c.as_ref()));
        sum.trim(keep);
        sum
    }
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
                    writes.entry((g, t)).or_default().add(exact, s, keep);
                });
            } else {
                let (r, rb) = col.reads_of(i);
                let exact = if bytes { rb } else { r };
                if exact == 0 {
                    continue;
                }
                let s = pick(find(0, 0), filter_keys, ks, ke);
                reads.add(exact, s, keep);
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
                let s = acc.finish(keep);
                rest.add(s.total, Some(Cow::Owned(s)), keep);
                continue;
            }
            parts.push(HotPart {
                group,
                term,
                summary: acc.finish(keep),
            });
        }
        if !rest.pending.is_empty() || rest.uncaptured > 0 {
            let s = rest.finish(keep);
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
            summary: reads.finish(keep),
        }]
    };
    NodeHotKeys {
        series: query.series,
        mode,
        node_id: None,
        parts,
    }
}
