//! Building a [`Matrix`] from the local history.

use std::collections::HashMap;
use std::sync::Arc;

use super::budget::{plan_groups, unique_bucket_ids};
use super::wire::{CellLane, MAX_CELL_LANES, Matrix, MatrixRow, Series};
use crate::bucket::{
    incarnation_bucket_id, max_end, parse_route_bucket_id, range_order, virtual_bucket_name,
};
use crate::history::{Column, Counter, History, MAX_QUERY_COLUMNS, RowMeta};
use crate::preview::key_preview;

/// What to read from the history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatrixQuery {
    /// The counter shown.
    pub series: Series,
    /// Inclusive lower bound on column window start; `None` = unbounded.
    pub from_unix_ms: Option<i64>,
    /// Exclusive upper bound on column window start; `None` = unbounded.
    pub to_unix_ms: Option<i64>,
    /// At most this many rows (adjacent rows coarsened, least active first);
    /// `None` = every row. `Some(0)` is treated as 1.
    pub row_budget: Option<usize>,
    /// Only rows whose range overlaps `[key_start, key_end)`; `None` = from the
    /// first key. Applied before the row budget, so a zoomed view gets finer rows.
    pub key_start: Option<Vec<u8>>,
    /// Exclusive end of the key filter; `None` = unbounded.
    pub key_end: Option<Vec<u8>>,
}

impl MatrixQuery {
    /// True when a row `[start, end)` overlaps the query's key range.
    #[must_use = "pure function"]
    pub fn overlaps(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let after_start = match (&self.key_start, end) {
            (Some(ks), Some(end)) => end > ks.as_slice(),
            _ => true,
        };
        let before_end = match &self.key_end {
            Some(ke) => start < ke.as_slice(),
            None => true,
        };
        after_start && before_end
    }
}

fn counter_of(series: Series) -> Counter {
    match series {
        Series::Reads => Counter::Reads,
        Series::Writes => Counter::Writes,
        Series::ReadBytes => Counter::ReadBytes,
        Series::WriteBytes => Counter::WriteBytes,
        Series::LeaderReads => Counter::ReadsLeader,
        Series::FollowerReads => Counter::ReadsFollower,
    }
}

/// `bucket_of` value of a row outside the query's key range.
const FILTERED: u32 = u32::MAX - 1;

/// Row id that names no interned row.
const NO_ROW_ID: u32 = u32::MAX;

/// Identity id marking a coarsened cell whose members disagree on identity.
const MIXED_ID: u32 = u32::MAX;

/// Output row of a row that is not shown.
const NO_OUT: u32 = u32::MAX;

/// One output cell while filling.
#[derive(Debug, Clone, Copy, Default)]
struct OutCell {
    value: u64,
    /// Index into the query's identity table (0 = none), or [`MIXED_ID`].
    ident: u32,
    /// The cell's identity shares are in the sparse share map.
    shared: bool,
}

/// One row incarnation seen in the window: its newest row metadata and its total.
struct Bucket<'a> {
    row: u32,
    generation: u64,
    total: u64,
    /// Smallest and largest captured key label over the incarnation's rows.
    labels: Option<(&'a [u8], &'a [u8])>,
}

fn join<'a>(
    a: Option<(&'a [u8], &'a [u8])>,
    b: Option<(&'a [u8], &'a [u8])>,
) -> Option<(&'a [u8], &'a [u8])> {
    match (a, b) {
        (Some((af, al)), Some((bf, bl))) => Some((af.min(bf), al.max(bl))),
        (a, None) => a,
        (None, b) => b,
    }
}

/// What a bucket is keyed by: its (plain) id and the range it was counted under.
type IncarnationKey<'a> = (&'a str, &'a [u8], Option<&'a [u8]>);

/// Builds the matrix of `query` from `history`.
///
/// Rows with a zero total in the chosen series are left out; every other count
/// in the window appears exactly once (the row budget only coarsens). A row is
/// one *incarnation*: a bucket id together with the key range it was counted
/// under, so a bucket whose range changed inside the window (a route split,
/// merged or re-registered) shows one row per range, each holding only the
/// counts taken under it. Rows are in [`range_order`] (start, then end), then
/// by id. `is_current(row id, meta)` says whether a route row's range is still the live
/// catalog's: such rows keep the plain id, the others get
/// [`incarnation_bucket_id`]. Row metadata of one incarnation (virtual members)
/// comes from its newest slot.
///
/// The columns come from one history tier, [`History::choose_tier`] with
/// [`MAX_QUERY_COLUMNS`]; `step_ms` of the result is that tier's step, and a
/// window start inside a coarse column includes that whole column. Write
/// cells counted under several (group, term) identities list their shares in
/// [`MatrixRow::write_lanes`], so the cluster merge stays exact.
pub(crate) fn build(
    history: &History,
    query: &MatrixQuery,
    generated_at: String,
    max_route_ids: usize,
    is_current: &dyn Fn(u32, &RowMeta) -> bool,
) -> Matrix {
    let tier = history.choose_tier(query.from_unix_ms, query.to_unix_ms, MAX_QUERY_COLUMNS);
    let step_ms = history.tier_step(tier);
    let columns: Vec<&Column> = history
        .tier_range(tier, query.from_unix_ms, query.to_unix_ms)
        .collect();
    let counter = counter_of(query.series);
    let catalog = &history.catalog;
    let mut scratch = Vec::new();

    // Pass 1: which incarnations have traffic, and how much. Steady traffic
    // names the same rows in every column (the columns then share one row
    // array): a run of such columns is summed per cell first, so the per-row
    // lookups below run once per run instead of once per cell.
    let mut bucket_of = vec![u32::MAX; catalog.capacity()];
    let mut names: HashMap<IncarnationKey<'_>, u32> = HashMap::new();
    let mut buckets: Vec<Bucket<'_>> = Vec::new();
    let mut tally = |rows: &[u32], acc: &[u64]| {
        for (&row, &v) in rows.iter().zip(acc) {
            if v == 0 {
                continue;
            }
            let Some(slot) = bucket_of.get_mut(row as usize) else {
                continue;
            };
            if *slot == FILTERED {
                continue;
            }
            if *slot == u32::MAX {
                let Some(meta) = catalog.get(row) else {
                    continue;
                };
                if !query.overlaps(&meta.start, meta.end.as_deref()) {
                    *slot = FILTERED;
                    continue;
                }
                let next = buckets.len() as u32;
                let key = (&*meta.bucket_id, meta.start.as_slice(), meta.end.as_deref());
                let b = *names.entry(key).or_insert(next);
                if b == next {
                    buckets.push(Bucket {
                        row,
                        generation: meta.generation,
                        total: 0,
                        labels: None,
                    });
                }
                // Each row is mapped once: its labels join its incarnation's.
                let labels = meta
                    .labels
                    .as_ref()
                    .map(|(f, l)| (f.as_slice(), l.as_slice()));
                let bucket = &mut buckets[b as usize];
                bucket.labels = join(bucket.labels, labels);
                *slot = b;
            }
            let b = &mut buckets[*slot as usize];
            b.total = b.total.saturating_add(v);
            // Slots rebuilt over an unchanged range (re-registration, a virtual
            // bucket gaining a member) intern new rows of the same incarnation:
            // the newest slot's metadata names it. (Distinct rows of one
            // incarnation have distinct generations, so the visiting order
            // does not change the choice.)
            if row != b.row {
                let generation = catalog.get(row).map_or(0, |m| m.generation);
                if generation >= b.generation {
                    b.row = row;
                    b.generation = generation;
                }
            }
        }
    };
    let mut run: Option<&Arc<[u32]>> = None;
    for col in &columns {
        if !run.is_some_and(|r| Arc::ptr_eq(r, &col.rows)) {
            if let Some(rows) = run {
                tally(rows, &scratch);
            }
            scratch.clear();
            scratch.resize(col.rows.len(), 0);
            run = Some(&col.rows);
        }
        col.add_values_into(counter, &mut scratch);
    }
    if let Some(rows) = run {
        tally(rows, &scratch);
    }

    // Order by key, then plan the row budget.
    let meta_of = |b: &Bucket| catalog.get(b.row);
    let mut order: Vec<u32> = (0..buckets.len() as u32).collect();
    order.sort_by(|&a, &b| {
        let (ma, mb) = (meta_of(&buckets[a as usize]), meta_of(&buckets[b as usize]));
        match (ma, mb) {
            (Some(ma), Some(mb)) => range_order(
                (&ma.start, ma.end.as_deref()),
                (&mb.start, mb.end.as_deref()),
            )
            .then_with(|| ma.bucket_id.cmp(&mb.bucket_id)),
            (a, b) => a.is_some().cmp(&b.is_some()),
        }
    });
    let totals: Vec<u64> = order.iter().map(|&b| buckets[b as usize].total).collect();
    let plan = match query.row_budget {
        Some(budget) => plan_groups(&totals, budget),
        None => (0..totals.len()).map(|i| i..i + 1).collect(),
    };
    let mut out_of_bucket = vec![0u32; buckets.len()];
    for (o, group) in plan.iter().enumerate() {
        for pos in group.clone() {
            out_of_bucket[order[pos] as usize] = o as u32;
        }
    }

    // Output row of every interned row (`NO_OUT` for rows not shown).
    let mut out_of_row = vec![NO_OUT; bucket_of.len()];
    for (o, &b) in out_of_row.iter_mut().zip(&bucket_of) {
        if let Some(&x) = out_of_bucket.get(b as usize) {
            *o = x;
        }
    }

    // Pass 2: fill values and write identities, BLOCK columns at a time into
    // a small buffer (row-major within the block, so one column's scattered
    // row writes stay in L2), appended to the row-major wire rows after each
    // block. Identities are numbered per query (`idents`), so a buffered cell
    // is 16 B.
    let width = columns.len();
    let n_out = plan.len();
    let mut vals: Vec<Vec<u64>> = (0..n_out).map(|_| Vec::with_capacity(width)).collect();
    let mut grps: Vec<Vec<u64>> = (0..n_out).map(|_| Vec::with_capacity(width)).collect();
    let mut trms: Vec<Vec<u64>> = (0..n_out).map(|_| Vec::with_capacity(width)).collect();
    const BLOCK: usize = 32;
    let mut block = vec![OutCell::default(); n_out * BLOCK];
    let mut idents: Vec<(u64, u64)> = vec![(0, 0)];
    let mut ident_ids: rustc_hash::FxHashMap<(u64, u64), u32> = rustc_hash::FxHashMap::default();
    ident_ids.insert((0, 0), 0);
    // Identity shares of the output cells with more than one (sparse: only
    // cells with a leader change inside the window, or rows of several
    // identities coarsened together): (row, column, group, term, value),
    // unsorted and unjoined until the end (no hashing, no per-cell allocation).
    let mut shares: Vec<(u32, u32, u64, u64, u64)> = Vec::new();
    let is_write = query.series.is_write();
    let bytes = counter == Counter::WriteBytes;
    let mut cell_out: Vec<u32> = Vec::new();
    let mut cell_out_of: Option<&Arc<[u32]>> = None;
    let mut ids: Vec<u64> = Vec::new();
    let mut col_ids: Vec<u32> = Vec::new();
    for (j0, chunk) in columns
        .chunks(BLOCK)
        .enumerate()
        .map(|(n, c)| (n * BLOCK, c))
    {
        for (jj, col) in chunk.iter().enumerate() {
            let j = j0 + jj;
            if !cell_out_of.is_some_and(|r| Arc::ptr_eq(r, &col.rows)) {
                cell_out.clear();
                cell_out.extend(
                    col.rows
                        .iter()
                        .map(|&r| out_of_row.get(r as usize).copied().unwrap_or(NO_OUT)),
                );
                cell_out_of = Some(&col.rows);
            }
            col.values_into(counter, &mut scratch);
            col.identity_indices_into(&mut ids);
            col_ids.clear();
            col_ids.extend(col.identities().iter().map(|&key| {
                *ident_ids.entry(key).or_insert_with(|| {
                    idents.push(key);
                    (idents.len() - 1) as u32
                })
            }));
            let multi_lane = is_write && col.has_extra_lanes();
            let mut k = 0usize;
            for (i, (&v, &o)) in scratch.iter().zip(&cell_out).enumerate() {
                if v == 0 {
                    continue;
                }
                let Some(cell) = block.get_mut(o as usize * BLOCK + jj) else {
                    continue;
                };
                let q = ids
                    .get(i)
                    .and_then(|&x| col_ids.get(x as usize))
                    .copied()
                    .unwrap_or(0);
                if is_write {
                    let lanes = multi_lane && col.extra_lanes_of(i, &mut k);
                    let differs = cell.value != 0 && cell.ident != q;
                    if lanes || differs || cell.shared {
                        let jj = j as u32;
                        if !cell.shared && cell.value != 0 {
                            // Until now the cell had one identity: its own.
                            let (g, t) = idents.get(cell.ident as usize).copied().unwrap_or((0, 0));
                            shares.push((o, jj, g, t, cell.value));
                        }
                        cell.shared = true;
                        if lanes {
                            col.for_each_lane_at(i, k, |g, t, w, wb| {
                                let v = if bytes { wb } else { w };
                                if v != 0 {
                                    shares.push((o, jj, g, t, v));
                                }
                            });
                        } else {
                            let (g, t) = idents.get(q as usize).copied().unwrap_or((0, 0));
                            shares.push((o, jj, g, t, v));
                        }
                    }
                }
                if cell.value == 0 {
                    cell.ident = q;
                } else if cell.ident != MIXED_ID && cell.ident != q {
                    // Members disagree: the coarsened cell has no single identity.
                    cell.ident = MIXED_ID;
                }
                cell.value = cell.value.saturating_add(v);
            }
        }
        let bw = chunk.len();
        for (o, cells) in block.chunks_mut(BLOCK).enumerate() {
            let cells = &mut cells[..bw];
            let pair = |c: &OutCell| {
                if c.ident == MIXED_ID {
                    (0, 0)
                } else {
                    idents.get(c.ident as usize).copied().unwrap_or((0, 0))
                }
            };
            // Three sequential extends per row (not a push per cell): the row
            // arrays are the query's largest writes.
            vals[o].extend(cells.iter().map(|c| c.value));
            grps[o].extend(cells.iter().map(|c| pair(c).0));
            trms[o].extend(cells.iter().map(|c| pair(c).1));
            cells.fill(OutCell::default());
        }
    }

    let (mut vals, mut grps, mut trms) = (vals.into_iter(), grps.into_iter(), trms.into_iter());
    let mut row_lanes: Vec<Vec<CellLane>> = vec![Vec::new(); n_out];
    shares.sort_unstable_by_key(|&(o, j, g, t, _)| (o, j, g, t));
    let mut k = 0;
    while k < shares.len() {
        let (o, j) = (shares[k].0, shares[k].1);
        let mut list: Vec<(u64, u64, u64)> = Vec::new();
        while let Some(&(_, _, g, t, v)) = shares.get(k).filter(|s| (s.0, s.1) == (o, j)) {
            match list.last_mut() {
                Some(last) if (last.0, last.1) == (g, t) => last.2 = last.2.saturating_add(v),
                _ => list.push((g, t, v)),
            }
            k += 1;
        }
        if list.len() < 2 {
            continue;
        }
        let mut capped = cap_shares(list);
        capped.sort_unstable_by_key(|&(g, t, _)| (g, t));
        if let Some(lanes) = row_lanes.get_mut(o as usize) {
            lanes.extend(capped.into_iter().map(|(group, term, value)| CellLane {
                column: j,
                group,
                term,
                value,
            }));
        }
    }
    let mut row_lanes = row_lanes.into_iter();

    let mut rows = Vec::with_capacity(n_out);
    for group in &plan {
        let metas: Vec<&RowMeta> = group
            .clone()
            .filter_map(|pos| meta_of(&buckets[order[pos] as usize]))
            .collect();
        let (Some(v), Some(g), Some(t), Some(write_lanes)) =
            (vals.next(), grps.next(), trms.next(), row_lanes.next())
        else {
            break;
        };
        let Some(first) = metas.first() else {
            continue;
        };
        let labels = group
            .clone()
            .map(|pos| buckets[order[pos] as usize].labels)
            .fold(None, join);
        // Cells with traffic but no write identity (reads) name the row's group.
        let group_of_rows = if metas.iter().all(|m| m.group == first.group) {
            first.group
        } else {
            0
        };
        let mut g = g;
        for (g, v) in g.iter_mut().zip(&v) {
            if *g == 0 && *v > 0 {
                *g = group_of_rows;
            }
        }
        // Identity of the output row: the bucket itself, or an aggregate of the group.
        let (bucket_id, end, aggregate, route_ids, truncated, route_count) = if metas.len() == 1 {
            let ids = if first.aggregate {
                first.route_ids.clone()
            } else {
                Vec::new() // a plain route row lists no members (as the reference)
            };
            let truncated = first.aggregate && first.route_count > first.route_ids.len() as u64;
            let row_id = group
                .clone()
                .next()
                .map_or(NO_ROW_ID, |pos| buckets[order[pos] as usize].row);
            let id = if !first.aggregate
                && parse_route_bucket_id(&first.bucket_id).is_some()
                && !is_current(row_id, first)
            {
                incarnation_bucket_id(&first.bucket_id, &first.start, first.end.as_deref())
            } else {
                first.bucket_id.to_string()
            };
            (
                id,
                first.end.clone(),
                first.aggregate,
                ids,
                truncated,
                first.route_count,
            )
        } else {
            // Overlapping incarnations: the last row in key order need not end last.
            let end = metas
                .iter()
                .map(|m| m.end.as_deref())
                .reduce(max_end)
                .flatten()
                .map(<[u8]>::to_vec);
            let mut route_ids: Vec<u64> = metas
                .iter()
                .flat_map(|m| m.route_ids.iter().copied())
                .collect();
            route_ids.sort_unstable();
            route_ids.dedup();
            // Sub-range rows of one route are one route: count distinct ids of
            // plain rows, plus the (exact) member counts of aggregates.
            let mut plain: Vec<u64> = metas
                .iter()
                .filter(|m| !m.aggregate)
                .flat_map(|m| m.route_ids.iter().copied())
                .collect();
            plain.sort_unstable();
            plain.dedup();
            let route_count = metas
                .iter()
                .filter(|m| m.aggregate)
                .map(|m| m.route_count)
                .fold(plain.len() as u64, u64::saturating_add);
            let truncated = route_ids.len() > max_route_ids || route_count > route_ids.len() as u64;
            route_ids.truncate(max_route_ids);
            let id = virtual_bucket_name(&first.start, end.as_deref());
            (id, end, true, route_ids, truncated, route_count)
        };
        let row = MatrixRow {
            bucket_id,
            label: None,
            start: non_empty(&first.start),
            end,
            aggregate,
            route_ids,
            route_ids_truncated: truncated,
            route_count,
            values: v,
            conflict: false,
            conflicts: Vec::new(),
            raft_group_ids: g,
            leader_terms: t,
            preview: Some(key_preview(&first.start)),
            first_key: labels.map(|(f, _)| f.to_vec()),
            last_key: labels.map(|(_, l)| l.to_vec()),
            write_lanes,
        };
        rows.push(row);
    }

    // A coarsened row is named by its range, which can equal a real virtual
    // bucket's (or, with a hash collision, another incarnation's): keep ids unique.
    unique_bucket_ids(&mut rows);

    Matrix {
        column_unix_ms: columns.iter().map(|c| c.unix_ms).collect(),
        rows,
        series: query.series,
        generated_at,
        step_ms,
        node_id: None,
    }
}

/// Keeps at most [`MAX_CELL_LANES`] shares: the largest identified ones; the
/// rest (and any identity-less share) join one `(0, 0)` share, so the sum is
/// unchanged.
pub(crate) fn cap_shares(mut list: Vec<(u64, u64, u64)>) -> Vec<(u64, u64, u64)> {
    if list.len() <= MAX_CELL_LANES {
        return list;
    }
    list.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(b.0.cmp(&a.0)));
    let mut anonymous = 0u64;
    let mut kept = Vec::with_capacity(MAX_CELL_LANES);
    for s in list {
        if kept.len() < MAX_CELL_LANES - 1 && (s.0, s.1) != (0, 0) {
            kept.push(s);
        } else {
            anonymous = anonymous.saturating_add(s.2);
        }
    }
    kept.push((0, 0, anonymous));
    kept
}

fn non_empty(key: &[u8]) -> Option<Vec<u8>> {
    (!key.is_empty()).then(|| key.to_vec())
}
