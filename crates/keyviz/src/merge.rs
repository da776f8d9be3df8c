//! The cluster merge: several nodes' matrices into one.
//!
//! Every node counts the traffic it served: reads on whichever node served
//! them, writes on the Raft leader that proposed them. Merging therefore needs
//! two rules:
//!
//! * **Reads** (and read bytes, leader/follower reads) are disjoint across
//!   nodes, so they are **summed**.
//! * **Writes** are counted by one leader per (raft group, term). Within one
//!   (group, term) the nodes must agree, so duplicates collapse by **max**; two
//!   different non-zero values for the same (group, term) are a **conflict**,
//!   flagged on that cell only. Distinct terms (a leadership flip inside a
//!   window) are **summed**. When any non-zero contributor lacks an identity
//!   (group or term 0, e.g. an old peer), the cell falls back to max, with a
//!   conflict if two distinct non-zero values appear.
//!
//! Columns are first aligned to the step boundary (rounding to nearest), so a
//! peer with a jittered clock does not split one window into two columns. Rows
//! are joined by *incarnation*: the bucket id without its incarnation suffix
//! (`@<hash>`, see [`crate::incarnation_bucket_id`]) together with the key
//! range, so every range keeps its own row whatever each node calls it;
//! metadata (and the id) comes from the first input that has the row (local
//! first). Every choice is deterministic: the same inputs in any
//! order give the same values, and the same identity per cell.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bucket::{bucket_base, incarnation_bucket_id, range_order};
use crate::matrix::budget::{coarsen_rows, unique_bucket_ids};
use crate::matrix::query::cap_shares;
use crate::matrix::wire::{
    CellLane, MAX_MATRIX_CELLS, MAX_MATRIX_COLUMNS, Matrix, MatrixRow, Series,
};
use crate::time::{align_down, align_nearest};

/// Route ids listed per aggregate row produced by the row budget.
pub const MAX_LISTED_ROUTE_IDS: usize = 256;

/// How to merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeOptions {
    /// The series every input carries; decides sum versus per-term dedup.
    pub series: Series,
    /// The step to align columns to; 0 disables alignment (exact timestamps).
    pub step_ms: u64,
    /// Row budget applied after the merge; `None` keeps every row.
    pub row_budget: Option<usize>,
    /// Columns starting at or after this instant are still *settling*: their
    /// writes merge by the same rules, but two values for one (group, term)
    /// are not a conflict there (see [`settling_from_unix_ms`]). `None`
    /// treats every column as settled (the rule of the reference).
    pub settling_from_unix_ms: Option<i64>,
}

/// The least time after a window closes during which replicas may still
/// disagree about its writes without anything being wrong (10 s).
pub const SETTLE_MIN_MS: u64 = 10_000;

/// Where the settling columns of a cluster query begin: columns whose window
/// ended less than `max(2 × step_ms, SETTLE_MIN_MS)` before `now_unix_ms`.
///
/// Every replica counts a write when it applies it, stamped with the
/// proposer's clock, so a replica that applies a little behind the leader, or
/// that sealed the window before the last of its writes arrived (they reach
/// the column at its next flush, one step later), publishes a smaller count
/// for the same (group, term) than one that is caught up. That is lag, not
/// disagreement: the merge takes the largest count, which is the complete
/// one, and flags a conflict only where the replicas have had a step and
/// their apply lag to catch up and still differ. Pure: the caller passes the
/// clock.
#[must_use]
pub fn settling_from_unix_ms(now_unix_ms: i64, step_ms: u64) -> i64 {
    let grace = step_ms.saturating_mul(2).max(SETTLE_MIN_MS);
    let window_and_grace = i64::try_from(step_ms.saturating_add(grace)).unwrap_or(i64::MAX);
    now_unix_ms.saturating_sub(window_and_grace)
}

/// Something worth telling the operator about the inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningCode {
    /// Two inputs name the same bucket with different key ranges: their route
    /// catalogs disagree (for example, a split not yet applied everywhere).
    /// Both ranges are kept as separate rows. Two incarnations of one route
    /// (before and after a split) have distinct ids and raise no warning.
    CatalogDivergence,
    /// An input's step differs from the merge step; its columns were aligned.
    StepMismatch,
    /// An input carries another series than the one merged; it was left out.
    SeriesMismatch,
    /// The merged matrix would exceed [`MAX_MATRIX_CELLS`] or
    /// [`MAX_MATRIX_COLUMNS`]; only the newest columns were kept.
    ColumnsTruncated,
}

/// A warning about one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeWarning {
    /// What happened.
    pub code: WarningCode,
    /// Index of the input it is about (0 = local).
    pub input: usize,
    /// The row concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_id: Option<String>,
    /// Human-readable detail.
    pub detail: String,
}

/// The merged matrix and the warnings found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Rows sorted by start key, row budget applied.
    pub matrix: Matrix,
    /// Warnings in input order.
    pub warnings: Vec<MergeWarning>,
}

/// What rows are joined by: bucket id without incarnation suffix, start (`None`
/// for the empty key), end.
type Incarnation<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>);

/// One node's contribution to one cell (or one identity share of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Contribution {
    value: u64,
    group: u64,
    term: u64,
    /// Which member (node row) it came from: shares of one node add up.
    member: u32,
}

/// The merged cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cell {
    value: u64,
    group: u64,
    term: u64,
    conflict: bool,
}

/// Deterministic preference between two contributions of equal standing:
/// larger value, then larger term, then larger group.
fn rank(c: &Contribution) -> (u64, u64, u64) {
    (c.value, c.term, c.group)
}

fn resolve_read_cell(contribs: &[Contribution]) -> Cell {
    let value = contribs.iter().fold(0u64, |a, c| a.saturating_add(c.value));
    let best = contribs
        .iter()
        .filter(|c| c.value > 0)
        .max_by_key(|c| rank(c))
        .copied()
        .unwrap_or_default();
    Cell {
        value,
        group: best.group,
        term: best.term,
        conflict: false,
    }
}

fn resolve_write_cell(contribs: &[Contribution], keys: &mut Vec<(u64, u64, u64, bool)>) -> Cell {
    keys.clear();
    let nonzero = || contribs.iter().filter(|c| c.value > 0);
    let Some(first) = nonzero().next() else {
        return Cell::default();
    };
    if nonzero().any(|c| c.group == 0 || c.term == 0) {
        // Legacy fallback: without identities we cannot tell a duplicate from a
        // flip, so take the largest node total and flag disagreement. A node's
        // shares are adjacent (same member): sum them first.
        let mut totals: Vec<Contribution> = Vec::new();
        for c in nonzero() {
            match totals.last_mut() {
                Some(t) if t.member == c.member => {
                    if c.value > t.value {
                        t.group = c.group;
                        t.term = c.term;
                    }
                    t.value = t.value.saturating_add(c.value);
                }
                _ => totals.push(*c),
            }
        }
        let first = totals.first().copied().unwrap_or(*first);
        let best = totals
            .iter()
            .max_by_key(|c| rank(c))
            .copied()
            .unwrap_or(first);
        let distinct = totals.iter().any(|c| c.value != first.value);
        keys.clear();
        return Cell {
            value: best.value,
            group: best.group,
            term: best.term,
            conflict: distinct,
        };
    }
    keys.clear();
    for c in nonzero() {
        match keys
            .iter_mut()
            .find(|(g, t, _, _)| *g == c.group && *t == c.term)
        {
            Some(key) => {
                if key.2 != c.value {
                    key.3 = true;
                    key.2 = key.2.max(c.value);
                }
            }
            None => keys.push((c.group, c.term, c.value, false)),
        }
    }
    let value = keys.iter().fold(0u64, |a, k| a.saturating_add(k.2));
    let best = keys
        .iter()
        .max_by_key(|(g, t, v, _)| (*v, *t, *g))
        .copied()
        .unwrap_or_default();
    Cell {
        value,
        group: best.0,
        term: best.1,
        conflict: keys.iter().any(|k| k.3),
    }
}

/// The lanes of column `j` in `lanes` (sorted by column, as validated).
fn lanes_of(lanes: &[CellLane], j: usize) -> &[CellLane] {
    if lanes.is_empty() {
        return lanes;
    }
    let j = j as u32;
    let lo = lanes.partition_point(|l| l.column < j);
    let hi = lanes.partition_point(|l| l.column <= j);
    lanes.get(lo..hi).unwrap_or(&[])
}

/// Adds `value` to the share of (group, term), or a new share.
fn add_share(list: &mut Vec<(u64, u64, u64)>, group: u64, term: u64, value: u64) {
    if value == 0 {
        return;
    }
    match list.iter_mut().find(|s| (s.0, s.1) == (group, term)) {
        Some(s) => s.2 = s.2.saturating_add(value),
        None => list.push((group, term, value)),
    }
}

/// Merges `inputs` (index 0 = the local node, then peers in configured order).
///
/// Guarantees: never panics on any input (short arrays count as zeros — callers
/// should still reject malformed peers with [`Matrix::validate`] first); output
/// columns are the sorted union of the aligned input columns, bounded by
/// [`MAX_MATRIX_COLUMNS`] and [`MAX_MATRIX_CELLS`] (oldest dropped, with a
/// warning); output rows are sorted by start key, then end key (unbounded
/// last), then bucket id, one per incarnation (bucket id without suffix plus
/// key range), with unique ids; the row
/// budget applied after the merge; read totals equal the sum of input totals;
/// without a row budget, values and identities do not depend on input order
/// (metadata and warnings do: the first input wins, and with diverging ranges
/// that choice also steers how a budget coarsens).
#[must_use = "returns the merged matrix"]
pub fn merge(inputs: &[Matrix], options: &MergeOptions) -> Merged {
    let step = options.step_ms;
    let mut warnings = Vec::new();

    // Inputs of another series would add apples to oranges: leave them out.
    let usable: Vec<bool> = inputs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let ok = m.series == options.series;
            if !ok {
                warnings.push(MergeWarning {
                    code: WarningCode::SeriesMismatch,
                    input: i,
                    bucket_id: None,
                    detail: format!(
                        "input carries series {}, the merge is of {}; input left out",
                        m.series, options.series
                    ),
                });
            }
            ok
        })
        .collect();

    // 1. Align and union the columns. A jittered window start rounds to the
    // nearest boundary; a finer-step input's windows round down into the
    // window that contains them.
    let aligned: Vec<Vec<i64>> = inputs
        .iter()
        .zip(&usable)
        .map(|(m, &ok)| {
            if !ok {
                return Vec::new();
            }
            let finer = m.step_ms != 0 && m.step_ms < step;
            m.column_unix_ms
                .iter()
                .map(|&t| match (step, finer) {
                    (0, _) => t,
                    (_, true) => align_down(t, step),
                    (_, false) => align_nearest(t, step),
                })
                .collect()
        })
        .collect();
    for (i, m) in inputs.iter().enumerate() {
        if usable[i] && step > 0 && m.step_ms != 0 && m.step_ms != step {
            warnings.push(MergeWarning {
                code: WarningCode::StepMismatch,
                input: i,
                bucket_id: None,
                detail: format!(
                    "input step is {} ms, merge step is {step} ms; columns were aligned",
                    m.step_ms
                ),
            });
        }
    }
    let mut columns: Vec<i64> = aligned.iter().flatten().copied().collect();
    columns.sort_unstable();
    columns.dedup();

    // 2. Join rows by incarnation: plain bucket id (incarnation suffix
    // stripped) and key range. One incarnation is one row even where nodes
    // name it differently (a node that has not applied a split yet still
    // calls the old range by the plain id); a range is never drawn under
    // another range's row. The same id with two ranges means the catalogs
    // disagree, which is worth a warning; two incarnations with distinct ids
    // are not.
    let mut index: HashMap<Incarnation<'_>, usize> = HashMap::new();
    let mut first_range: HashMap<&str, &MatrixRow> = HashMap::new();
    let mut meta: Vec<&MatrixRow> = Vec::new();
    let mut contributors: Vec<Vec<(usize, usize)>> = Vec::new();
    for (i, m) in inputs.iter().enumerate() {
        if !usable[i] {
            continue;
        }
        for (r, row) in m.rows.iter().enumerate() {
            match first_range.get(row.bucket_id.as_str()) {
                Some(first) if first.start != row.start || first.end != row.end => {
                    warnings.push(MergeWarning {
                        code: WarningCode::CatalogDivergence,
                        input: i,
                        bucket_id: Some(row.bucket_id.clone()),
                        detail: "bucket has a different key range than on an earlier node; \
                                 both ranges are shown as separate rows"
                            .to_owned(),
                    });
                }
                Some(_) => {}
                None => {
                    first_range.insert(row.bucket_id.as_str(), row);
                }
            }
            let key = (
                bucket_base(&row.bucket_id),
                row.start.as_deref().filter(|s| !s.is_empty()),
                row.end.as_deref(),
            );
            match index.get(&key) {
                Some(&k) => contributors[k].push((i, r)),
                None => {
                    index.insert(key, meta.len());
                    meta.push(row);
                    contributors.push(vec![(i, r)]);
                }
            }
        }
    }

    // Bound the output: keep the newest columns that fit the cell budget.
    let max_width = MAX_MATRIX_COLUMNS.min(MAX_MATRIX_CELLS / meta.len().max(1));
    if columns.len() > max_width {
        let dropped = columns.len() - max_width;
        warnings.push(MergeWarning {
            code: WarningCode::ColumnsTruncated,
            input: 0,
            bucket_id: None,
            detail: format!(
                "{} rows x {} columns exceed the merge limit; the oldest {dropped} columns were left out",
                meta.len(),
                columns.len()
            ),
        });
        columns.drain(..dropped);
    }
    let width = columns.len();
    let col_maps: Vec<Vec<Option<usize>>> = aligned
        .iter()
        .map(|cols| cols.iter().map(|t| columns.binary_search(t).ok()).collect())
        .collect();

    // 3. Resolve cells row by row with reusable scratch buffers.
    let mut scratch: Vec<Contribution> = Vec::new();
    let mut cell_contribs: Vec<Contribution> = Vec::new();
    let mut keys = Vec::new();
    let is_write = options.series.is_write();
    let settling_from = options.settling_from_unix_ms;
    // Per (member, merged column), the identity shares of a node's cell that
    // holds several (sparse; usually empty).
    let mut shares: HashMap<usize, Vec<(u64, u64, u64)>> = HashMap::new();
    let mut rows = Vec::with_capacity(meta.len());
    for (k, first) in meta.iter().enumerate() {
        let members = &contributors[k];
        shares.clear();
        scratch.clear();
        scratch.resize(members.len() * width, Contribution::default());
        for (m, &(i, r)) in members.iter().enumerate() {
            let row = &inputs[i].rows[r];
            let dense = &mut scratch[m * width..(m + 1) * width];
            for (j, &u) in col_maps[i].iter().enumerate() {
                let Some(u) = u else {
                    continue; // a column left out by the size limit
                };
                let c = Contribution {
                    value: row.values.get(j).copied().unwrap_or(0),
                    group: row.raft_group_ids.get(j).copied().unwrap_or(0),
                    term: row.leader_terms.get(j).copied().unwrap_or(0),
                    member: m as u32,
                };
                let lanes = if is_write {
                    lanes_of(&row.write_lanes, j)
                } else {
                    &[]
                };
                let slot = &mut dense[u];
                let key = m * width + u;
                if is_write
                    && (!lanes.is_empty()
                        || (!shares.is_empty() && shares.contains_key(&key))
                        || (slot.value != 0
                            && c.value != 0
                            && (slot.group, slot.term) != (c.group, c.term)))
                {
                    // Several identities in this node's cell: keep them apart,
                    // so replicas deduplicate per (group, term).
                    let list = shares.entry(key).or_default();
                    if slot.value != 0 {
                        add_share(list, slot.group, slot.term, slot.value);
                        *slot = Contribution::default();
                    }
                    if lanes.is_empty() {
                        add_share(list, c.group, c.term, c.value);
                    } else {
                        for l in lanes {
                            add_share(list, l.group, l.term, l.value);
                        }
                    }
                    continue;
                }
                // Two columns of one input aligned into one window: that node
                // counted both, so they add; identity follows the larger part.
                if c.value > slot.value {
                    slot.group = c.group;
                    slot.term = c.term;
                }
                slot.member = c.member;
                slot.value = slot.value.saturating_add(c.value);
            }
        }
        let mut values = vec![0u64; width];
        let mut groups = vec![0u64; width];
        let mut terms = vec![0u64; width];
        let mut conflicts: Vec<bool> = Vec::new();
        let mut write_lanes: Vec<CellLane> = Vec::new();
        for j in 0..width {
            cell_contribs.clear();
            if shares.is_empty() {
                cell_contribs.extend((0..members.len()).map(|m| scratch[m * width + j]));
            } else {
                for m in 0..members.len() {
                    match shares.get(&(m * width + j)) {
                        Some(list) => {
                            cell_contribs.extend(list.iter().map(|&(group, term, value)| {
                                Contribution {
                                    value,
                                    group,
                                    term,
                                    member: m as u32,
                                }
                            }))
                        }
                        None => cell_contribs.push(scratch[m * width + j]),
                    }
                }
            }
            let cell = if is_write {
                let mut cell = resolve_write_cell(&cell_contribs, &mut keys);
                if settling_from.is_some_and(|from| columns[j] >= from) {
                    cell.conflict = false;
                }
                if keys.len() > 1 {
                    // Keep the shares, so a merge of this result stays exact.
                    let list = keys.iter().map(|&(g, t, v, _)| (g, t, v)).collect();
                    let mut capped: Vec<CellLane> = cap_shares(list)
                        .into_iter()
                        .map(|(group, term, value)| CellLane {
                            column: j as u32,
                            group,
                            term,
                            value,
                        })
                        .collect();
                    capped.sort_unstable_by_key(|l| (l.group, l.term));
                    write_lanes.extend(capped);
                }
                cell
            } else {
                resolve_read_cell(&cell_contribs)
            };
            values[j] = cell.value;
            groups[j] = cell.group;
            terms[j] = cell.term;
            if cell.conflict {
                if conflicts.is_empty() {
                    conflicts = vec![false; width];
                }
                conflicts[j] = true;
            }
        }
        rows.push(MatrixRow {
            bucket_id: first.bucket_id.clone(),
            label: first.label.clone(),
            start: first.start.clone(),
            end: first.end.clone(),
            aggregate: first.aggregate,
            route_ids: first.route_ids.clone(),
            route_ids_truncated: first.route_ids_truncated,
            route_count: first.route_count,
            conflict: !conflicts.is_empty(),
            conflicts,
            values,
            raft_group_ids: groups,
            leader_terms: terms,
            preview: first.preview.clone(),
            // Labels are observations, not counts: the smallest and largest
            // key any node saw is still a real key of the row.
            first_key: members
                .iter()
                .filter_map(|&(i, r)| inputs[i].rows[r].first_key.clone())
                .min(),
            last_key: members
                .iter()
                .filter_map(|&(i, r)| inputs[i].rows[r].last_key.clone())
                .max(),
            write_lanes,
        });
    }

    // 4. Keep ids unique: diverged catalogs can name two ranges alike; the
    // row first seen (local first) keeps the id, a later one takes its range
    // suffix. Then order by key (start, then end, then id) and apply the
    // budget to the cluster-wide result.
    let mut taken: std::collections::HashSet<String> =
        std::collections::HashSet::with_capacity(rows.len());
    for row in &mut rows {
        if !taken.insert(row.bucket_id.clone()) {
            let renamed = incarnation_bucket_id(
                bucket_base(&row.bucket_id),
                row.start.as_deref().unwrap_or(&[]),
                row.end.as_deref(),
            );
            if taken.insert(renamed.clone()) {
                row.bucket_id = renamed;
            }
        }
    }
    unique_bucket_ids(&mut rows);
    rows.sort_by(|a, b| {
        range_order(
            (a.start.as_deref().unwrap_or(&[]), a.end.as_deref()),
            (b.start.as_deref().unwrap_or(&[]), b.end.as_deref()),
        )
        .then_with(|| a.bucket_id.cmp(&b.bucket_id))
    });
    if let Some(budget) = options.row_budget {
        rows = coarsen_rows(rows, budget, MAX_LISTED_ROUTE_IDS);
    }
    let local = inputs.first();
    Merged {
        matrix: Matrix {
            column_unix_ms: columns,
            rows,
            series: options.series,
            generated_at: local.map(|m| m.generated_at.clone()).unwrap_or_default(),
            step_ms: if step > 0 {
                step
            } else {
                local.map_or(0, |m| m.step_ms)
            },
            node_id: local.and_then(|m| m.node_id.clone()),
        },
        warnings,
    }
}
