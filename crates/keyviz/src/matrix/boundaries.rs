//! Row boundaries shared by the whole cluster, so a fan-out costs the row budget, not the
//! routes times the nodes.
//!
//! The two-round fan-out: every node reports one total per row of its view for the window
//! ([`row_totals`]); the aggregator merges them into the cluster-wide picture and plans at
//! most `budget` contiguous groups with the same least-active-adjacent-pair rule as the
//! local row budget ([`Boundaries::plan`]); every node then coarsens its view onto exactly
//! those groups ([`coarsen_onto`]) and the aggregator folds the coarse answers into the
//! cluster matrix one at a time ([`ClusterFold`]), never holding every node's answer.
//!
//! Conservation: a row is assigned to the group holding its start key, whole, so every
//! count of every node lands in exactly one cluster row: per column, the cluster total is
//! the sum of the node totals for reads, and for writes the same per-(raft group, term)
//! dedup as [`crate::merge`] (duplicates of one (group, term) collapse by max, distinct
//! terms add, identity-less contributions fall back to max). A coarse cell whose members
//! carry several (group, term) identities keeps them as [`CellPart`]s, so coarsening on a
//! node never turns a cell into an identity-less one and the dedup stays exact: the fold
//! sums, per identity, what each node counted and takes the max across nodes, which equals
//! merging the fine rows first whenever each (group, term) was counted by one node (or by
//! several identically), the normal case.

use std::collections::HashMap;

use super::budget::{join_meta, join_rows, plan_groups, unique_bucket_ids};
use super::wire::{MAX_MATRIX_CELLS, MAX_MATRIX_COLUMNS, Matrix, MatrixRow, Series};
use crate::bucket::{bucket_base, max_end, parse_route_bucket_id, virtual_bucket_name};
use crate::merge::{MergeWarning, Merged, WarningCode};
use crate::time::{align_down, align_nearest};

/// Most boundaries one plan or one request may carry (the largest row budget a peer
/// accepts is far below this; it bounds what a hostile request can make a node build).
pub const MAX_BOUNDARIES: usize = 65_536;

/// One row of a node's view reduced to its start key and its total over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowTotal {
    /// Start key of the row (empty for the first key).
    pub start: Vec<u8>,
    /// Sum of the row's values (saturating).
    pub total: u64,
}

/// Per-row totals of `m`, in key order (rows with equal starts are kept apart; the plan
/// adds them up). O(rows × columns).
#[must_use = "pure function"]
pub fn row_totals(m: &Matrix) -> Vec<RowTotal> {
    let mut out: Vec<RowTotal> = m
        .rows
        .iter()
        .map(|r| RowTotal {
            start: r.start.clone().unwrap_or_default(),
            total: r.total(),
        })
        .collect();
    out.sort_by(|a, b| a.start.cmp(&b.start));
    out
}

/// Why a list of keys is not a valid set of boundaries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundaryError {
    /// There must be at least one boundary, and the first must be the empty key.
    #[error("boundaries must start with the empty key")]
    FirstNotEmpty,
    /// Keys must be strictly increasing.
    #[error("boundaries must be strictly increasing (at index {0})")]
    NotIncreasing(usize),
    /// More than [`MAX_BOUNDARIES`] keys.
    #[error("at most {MAX_BOUNDARIES} boundaries, got {0}")]
    TooMany(usize),
}

/// The start keys of the cluster's rows: strictly increasing, the first always the empty
/// key, so every key belongs to exactly one row `[keys[i], keys[i + 1])` (the last row is
/// unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundaries {
    keys: Vec<Vec<u8>>,
    /// False when the plan joined nothing: every distinct start key has a row of its own.
    coarse: bool,
}

impl Boundaries {
    /// Plans at most `budget` rows (0 counts as 1) for the cluster-wide picture made of
    /// every node's totals: equal starts are one entry (their totals added), then the
    /// least active adjacent entries are joined first ([`plan_groups`]), so the hottest
    /// rows stay rows of their own. Deterministic. Each node's list (sorted, as
    /// [`row_totals`] gives it; an unsorted one is sorted first) is merged into the distinct
    /// starts so far: O(nodes × distinct starts) when the nodes share their catalog, the
    /// normal case, instead of sorting every entry of every node.
    #[must_use = "pure function"]
    pub fn plan<'a>(nodes: impl IntoIterator<Item = &'a [RowTotal]>, budget: usize) -> Self {
        let mut starts: Vec<&[u8]> = Vec::new();
        let mut totals: Vec<u64> = Vec::new();
        let mut next_starts: Vec<&[u8]> = Vec::new();
        let mut next_totals: Vec<u64> = Vec::new();
        let mut sorted_copy: Vec<(&[u8], u64)> = Vec::new();
        for list in nodes {
            let list: &[RowTotal] = list;
            sorted_copy.clear();
            sorted_copy.extend(list.iter().map(|t| (t.start.as_slice(), t.total)));
            if !sorted_copy.windows(2).all(|w| w[0].0 <= w[1].0) {
                sorted_copy.sort_by(|a, b| a.0.cmp(b.0));
            }
            next_starts.clear();
            next_totals.clear();
            let mut push = |start: &'a [u8], total: u64| match next_starts.last() {
                Some(last) if *last == start => {
                    if let Some(t) = next_totals.last_mut() {
                        *t = t.saturating_add(total);
                    }
                }
                _ => {
                    next_starts.push(start);
                    next_totals.push(total);
                }
            };
            let (mut i, mut j) = (0, 0);
            while i < starts.len() || j < sorted_copy.len() {
                let take_old = match (starts.get(i), sorted_copy.get(j)) {
                    (Some(a), Some(b)) => *a <= b.0,
                    (Some(_), None) => true,
                    _ => false,
                };
                if take_old {
                    push(starts[i], totals[i]);
                    i += 1;
                } else {
                    push(sorted_copy[j].0, sorted_copy[j].1);
                    j += 1;
                }
            }
            std::mem::swap(&mut starts, &mut next_starts);
            std::mem::swap(&mut totals, &mut next_totals);
        }
        let coarse = starts.len() > budget.clamp(1, MAX_BOUNDARIES);
        let mut keys: Vec<Vec<u8>> = plan_groups(&totals, budget.min(MAX_BOUNDARIES))
            .into_iter()
            .map(|g| starts[g.start].to_vec())
            .collect();
        match keys.first_mut() {
            Some(first) => first.clear(),
            None => keys.push(Vec::new()),
        }
        Boundaries { keys, coarse }
    }

    /// Whether the plan had to join distinct start keys to fit the budget (always true for
    /// boundaries received with [`Boundaries::from_keys`]). When false the cluster's rows
    /// fit the budget as they are, and a caller may merge fine rows instead (keeping rows
    /// that share a start key, such as two incarnations of a split route, apart).
    #[must_use]
    pub fn is_coarse(&self) -> bool {
        self.coarse
    }

    /// Boundaries received from elsewhere (a peer request), checked.
    ///
    /// # Errors
    /// [`BoundaryError`] when the keys are not strictly increasing from the empty key or
    /// are more than [`MAX_BOUNDARIES`].
    pub fn from_keys(keys: Vec<Vec<u8>>) -> Result<Self, BoundaryError> {
        if keys.len() > MAX_BOUNDARIES {
            return Err(BoundaryError::TooMany(keys.len()));
        }
        if keys.first().is_none_or(|k| !k.is_empty()) {
            return Err(BoundaryError::FirstNotEmpty);
        }
        if let Some(i) = keys.windows(2).position(|w| w[0] >= w[1]) {
            return Err(BoundaryError::NotIncreasing(i + 1));
        }
        Ok(Boundaries { keys, coarse: true })
    }

    /// The start keys, in order.
    #[must_use]
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }

    /// Number of rows (at least 1).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: there is at least the row starting at the empty key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The row holding `start`. O(log rows).
    #[must_use]
    pub fn index_of(&self, start: &[u8]) -> usize {
        self.keys
            .partition_point(|k| k.as_slice() <= start)
            .saturating_sub(1)
    }

    /// [`Boundaries::index_of`], trying row `hint` and the one after it first: the rows of
    /// an answer come in key order, one per boundary row, so the next row's start is
    /// nearly always in the row after the previous one (two key comparisons instead of
    /// a binary search).
    fn index_near(&self, start: &[u8], hint: usize) -> usize {
        let holds = |i: usize| {
            self.keys.get(i).is_some_and(|k| k.as_slice() <= start)
                && self.keys.get(i + 1).is_none_or(|k| start < k.as_slice())
        };
        let next = hint.wrapping_add(1);
        if holds(next) {
            next
        } else if holds(hint) {
            hint
        } else {
            self.index_of(start)
        }
    }
}

/// One identity's share of a coarse cell whose members carried several (raft group, term)
/// identities (`values[column]` of `rows[row]` is the sum of its parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellPart {
    /// Row index in the matrix.
    pub row: u32,
    /// Column index in the matrix.
    pub column: u32,
    /// Raft group of the share (0 = unknown).
    pub group: u64,
    /// Leader term of the share (0 = unknown).
    pub term: u64,
    /// The share's count.
    pub value: u64,
}

/// A node's view on shared boundaries: at most one row per boundary row (rows without
/// members are left out), in key order, plus the identity parts of mixed cells, sorted by
/// (row, column).
#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryMatrix {
    /// The coarse rows; a row that is alone in its boundary row is kept as it was.
    pub matrix: Matrix,
    /// Identity parts of the cells whose members disagreed on (group, term).
    pub parts: Vec<CellPart>,
}

impl BoundaryMatrix {
    /// Checks the parts against the matrix: indices in range, sorted by (row, column),
    /// every listed cell's parts add up to its value (the matrix itself is the caller's to
    /// [`Matrix::validate`]).
    ///
    /// # Errors
    /// A description of the first violation.
    pub fn validate_parts(&self) -> Result<(), String> {
        let rows = &self.matrix.rows;
        check_parts(&self.parts, |r, c| {
            let row = rows
                .get(r)
                .ok_or_else(|| format!("part row {r} out of range"))?;
            row.values
                .get(c)
                .copied()
                .ok_or_else(|| format!("part column {c} out of range"))
        })
    }
}

/// Checks `parts` against the cells `value_at(row, column)` reads (an `Err` when the cell
/// does not exist): sorted by (row, column), every listed cell's parts adding up to its
/// value. Shared by both forms' `validate_parts`. O(parts).
fn check_parts(
    parts: &[CellPart],
    value_at: impl Fn(usize, usize) -> Result<u64, String>,
) -> Result<(), String> {
    let mut i = 0;
    while i < parts.len() {
        let p = parts[i];
        let value = value_at(p.row as usize, p.column as usize)?;
        let mut sum = 0u64;
        let mut j = i;
        while j < parts.len() && parts[j].row == p.row && parts[j].column == p.column {
            sum = sum.saturating_add(parts[j].value);
            j += 1;
        }
        if sum != value {
            return Err(format!(
                "parts of row {} column {} add up to {sum}, the cell says {value}",
                p.row, p.column
            ));
        }
        if let Some(next) = parts.get(j)
            && (next.row, next.column) < (p.row, p.column)
        {
            return Err("parts are not sorted by row and column".into());
        }
        i = j;
    }
    Ok(())
}

/// Coarsens a node's view onto `boundaries`: every row goes, whole, to the boundary row
/// holding its start; rows sharing a boundary row are joined like the local row budget
/// joins them (values summed, metadata joined, at most `max_route_ids` ids listed), and,
/// for a write series, where their non-zero members disagree on (group, term) the cell's
/// per-identity sums are kept as [`CellPart`]s. Totals per column are unchanged. O(rows × columns).
#[must_use = "returns the coarse view"]
pub fn coarsen_onto(
    mut m: Matrix,
    boundaries: &Boundaries,
    max_route_ids: usize,
) -> BoundaryMatrix {
    let rows = std::mem::take(&mut m.rows);
    let mut keyed: Vec<(usize, MatrixRow)> = rows
        .into_iter()
        .map(|r| {
            (
                boundaries.index_of(r.start.as_deref().unwrap_or_default()),
                r,
            )
        })
        .collect();
    // Stable: rows keep their key order inside one boundary row.
    keyed.sort_by_key(|(i, _)| *i);
    let mut out: Vec<MatrixRow> = Vec::new();
    let mut parts = Vec::new();
    let mut it = keyed.into_iter().peekable();
    while let Some((idx, first)) = it.next() {
        let mut members = vec![first];
        while let Some((_, r)) = it.next_if(|(i, _)| *i == idx) {
            members.push(r);
        }
        let row_index = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if members.len() == 1 {
            // A coarse-tier cell counted under several identities lists them in
            // `write_lanes`: they become parts, so the fold deduplicates each share.
            if m.series.is_write() && !members[0].write_lanes.is_empty() {
                collect_parts(&members, row_index, &mut parts);
            }
            out.extend(members);
            continue;
        }
        // Reads add up whoever counted them: only writes need their identities.
        if m.series.is_write() {
            collect_parts(&members, row_index, &mut parts);
        }
        out.push(join_rows(members, max_route_ids));
    }
    unique_bucket_ids(&mut out);
    m.rows = out;
    BoundaryMatrix { matrix: m, parts }
}

/// Per column, the per-identity sums of `members` where non-zero members disagree.
fn collect_parts(members: &[MatrixRow], row: u32, parts: &mut Vec<CellPart>) {
    let width = members.iter().map(|r| r.values.len()).max().unwrap_or(0);
    let mut keys: Vec<(u64, u64, u64)> = Vec::new();
    for j in 0..width {
        keys.clear();
        for m in members {
            let v = m.values.get(j).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let column = u32::try_from(j).unwrap_or(u32::MAX);
            let mut add =
                |g: u64, t: u64, v: u64| match keys.iter_mut().find(|k| k.0 == g && k.1 == t) {
                    Some(k) => k.2 = k.2.saturating_add(v),
                    None => keys.push((g, t, v)),
                };
            // Lanes are sorted by column; a listed cell's lanes sum to its value
            // (`Matrix::validate`), so they replace the cell's one named identity.
            let from = m.write_lanes.partition_point(|l| l.column < column);
            let lanes = m.write_lanes[from..]
                .iter()
                .take_while(|l| l.column == column);
            let mut listed = false;
            for l in lanes {
                listed = true;
                add(l.group, l.term, l.value);
            }
            if !listed {
                let g = m.raft_group_ids.get(j).copied().unwrap_or(0);
                let t = m.leader_terms.get(j).copied().unwrap_or(0);
                add(g, t, v);
            }
        }
        if keys.len() > 1 {
            let column = u32::try_from(j).unwrap_or(u32::MAX);
            parts.extend(keys.iter().map(|&(group, term, value)| CellPart {
                row,
                column,
                group,
                term,
                value,
            }));
        }
    }
}

/// A row's metadata without its cell arrays (and without `write_lanes`: identities of
/// mixed cells reach the fold as [`CellPart`]s, and one node's lanes would not describe the
/// merged cell). Copies no cell array.
fn header_of(row: &MatrixRow) -> MatrixRow {
    MatrixRow {
        bucket_id: row.bucket_id.clone(),
        label: row.label.clone(),
        start: row.start.clone(),
        end: row.end.clone(),
        aggregate: row.aggregate,
        route_ids: row.route_ids.clone(),
        route_ids_truncated: row.route_ids_truncated,
        route_count: row.route_count,
        conflict: row.conflict,
        preview: row.preview.clone(),
        first_key: row.first_key.clone(),
        last_key: row.last_key.clone(),
        ..MatrixRow::default()
    }
}

/// A run of equal values in a row's identity array (`raft_group_ids` or `leader_terms`):
/// identities change rarely along a row, so runs are what the boundary encoding carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentityRun {
    /// How many consecutive cells carry `value` (at least 1).
    pub len: u32,
    /// The group or term of those cells.
    pub value: u64,
}

/// `arr` as runs, into `out` (cleared first).
fn runs_of(arr: &[u64], out: &mut Vec<IdentityRun>) {
    out.clear();
    for &v in arr {
        match out.last_mut() {
            Some(r) if r.value == v && r.len < u32::MAX => r.len += 1,
            _ => out.push(IdentityRun { len: 1, value: v }),
        }
    }
}

/// Appends one cell's identity `value` to `runs`, extending the last run when it holds the
/// same value and belongs to the current row (starts at or after `row_from`): what
/// [`runs_of`] makes of the row's array, one cell at a time.
fn push_identity(runs: &mut Vec<IdentityRun>, row_from: usize, len: u32, value: u64) {
    if len == 0 {
        return;
    }
    if runs.len() > row_from
        && let Some(last) = runs.last_mut()
        && last.value == value
        && let Some(n) = last.len.checked_add(len)
    {
        last.len = n;
        return;
    }
    runs.push(IdentityRun { len, value });
}

/// A row's metadata, its cell arrays and lanes dropped (freed, not copied): what a
/// boundary answer's header carries of it, as [`header_of`] gives it.
fn strip_cells(mut row: MatrixRow) -> MatrixRow {
    row.values = Vec::new();
    row.conflicts = Vec::new();
    row.raft_group_ids = Vec::new();
    row.leader_terms = Vec::new();
    row.write_lanes = Vec::new();
    row
}

/// Where one row of a [`RunBoundaryMatrix`] ends in each of its shared buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct RowEnds {
    values: usize,
    groups: usize,
    terms: usize,
    conflicts: usize,
}

/// One row's cells in run form: what [`RunBoundaryMatrix::row`] gives (and, as slices,
/// what [`RunBoundaryMatrix::push_row`] takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunRow<'a> {
    /// One value per column.
    pub values: &'a [u64],
    /// `raft_group_ids` as maximal runs (none when the row carries no identities, else
    /// covering every cell).
    pub groups: &'a [IdentityRun],
    /// `leader_terms` as maximal runs, as `groups`.
    pub terms: &'a [IdentityRun],
    /// Per-cell conflict flags (empty when no cell is flagged), as the row's `conflicts`.
    pub conflicts: &'a [bool],
}

/// A node's view on shared boundaries with identities as runs from the source on: what
/// [`BoundaryMatrix`] says, without per-cell group and term arrays (two thirds of a coarse
/// answer's cells, which the boundary encodings write as runs anyway). A source builds it
/// row by row ([`RunBoundaryMatrix::push_row`]) or coarsens its view into it
/// ([`coarsen_onto_runs`]); the boundary encoders write it to the same bytes as the
/// per-cell form it stands for ([`RunBoundaryMatrix::from_boundary`]), and
/// [`ClusterFold`] folds it like that form ([`FoldInput::Runs`]).
///
/// Guarantees: every row has exactly one range in each buffer, in row order; runs are
/// maximal (no zero-length run, no two adjacent runs of one row with the same value), so
/// they are what [`runs_of`] gives of the arrays they stand for. Plain data: no lock, no
/// I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct RunBoundaryMatrix {
    /// Series, step, columns, node, generation time and every row's metadata (its cell
    /// arrays and `write_lanes` empty).
    header: Matrix,
    /// Every row's values, concatenated in row order.
    values: Vec<u64>,
    group_runs: Vec<IdentityRun>,
    term_runs: Vec<IdentityRun>,
    conflicts: Vec<bool>,
    /// Per row, the end of its ranges.
    ends: Vec<RowEnds>,
    /// Identity parts of mixed cells, sorted by (row, column), as in [`BoundaryMatrix`].
    parts: Vec<CellPart>,
}

impl RunBoundaryMatrix {
    /// An answer without rows for `header`'s series, step, columns, node and generation
    /// time (its rows, if any, are dropped).
    #[must_use]
    pub fn new(mut header: Matrix) -> Self {
        header.rows = Vec::new();
        RunBoundaryMatrix {
            header,
            values: Vec::new(),
            group_runs: Vec::new(),
            term_runs: Vec::new(),
            conflicts: Vec::new(),
            ends: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// The per-cell answer `b` in run form (lanes dropped: they travel as parts). Encodes
    /// to the same bytes as `b` and folds like it. O(cells).
    #[must_use]
    pub fn from_boundary(b: &BoundaryMatrix) -> Self {
        let m = &b.matrix;
        let mut out = RunBoundaryMatrix::new(Matrix {
            column_unix_ms: m.column_unix_ms.clone(),
            rows: Vec::new(),
            series: m.series,
            generated_at: m.generated_at.clone(),
            step_ms: m.step_ms,
            node_id: m.node_id.clone(),
        });
        out.reserve(m.rows.len(), m.rows.iter().map(|r| r.values.len()).sum());
        for row in &m.rows {
            out.push_cell_arrays(row);
            out.end_row(header_of(row));
        }
        out.parts.clone_from(&b.parts);
        out
    }

    /// The per-cell form (identity runs expanded; no lanes): the inverse of
    /// [`RunBoundaryMatrix::from_boundary`] but for the lanes. O(cells).
    #[must_use]
    pub fn into_boundary(self) -> BoundaryMatrix {
        let expand = |runs: &[IdentityRun]| -> Vec<u64> {
            runs.iter()
                .flat_map(|r| std::iter::repeat_n(r.value, r.len as usize))
                .collect()
        };
        let rows: Vec<MatrixRow> = self
            .rows()
            .map(|(meta, cells)| MatrixRow {
                values: cells.values.to_vec(),
                raft_group_ids: expand(cells.groups),
                leader_terms: expand(cells.terms),
                conflicts: cells.conflicts.to_vec(),
                ..meta.clone()
            })
            .collect();
        let mut matrix = self.header;
        matrix.rows = rows;
        BoundaryMatrix {
            matrix,
            parts: self.parts,
        }
    }

    /// Reserves room for `rows` more rows of `cells` values in all.
    pub fn reserve(&mut self, rows: usize, cells: usize) {
        self.header.rows.reserve(rows);
        self.ends.reserve(rows);
        self.values.reserve(cells);
    }

    /// Appends a row: `meta`'s metadata (its cell arrays and lanes are dropped), its
    /// `values`, its identities as runs and its conflict flags (empty, or one per cell).
    /// Runs are made maximal (zero-length runs dropped, equal neighbours joined), so the
    /// row encodes like the per-cell row they stand for; runs should cover all the row's
    /// values or none, as [`Matrix::validate`] asks of identity arrays. O(values + runs).
    pub fn push_row(
        &mut self,
        meta: MatrixRow,
        values: impl IntoIterator<Item = u64>,
        groups: &[IdentityRun],
        terms: &[IdentityRun],
        conflicts: &[bool],
    ) {
        self.values.extend(values);
        let from = self.group_runs.len();
        for r in groups {
            push_identity(&mut self.group_runs, from, r.len, r.value);
        }
        let from = self.term_runs.len();
        for r in terms {
            push_identity(&mut self.term_runs, from, r.len, r.value);
        }
        self.conflicts.extend_from_slice(conflicts);
        self.end_row(strip_cells(meta));
    }

    /// Appends a per-cell row (its arrays turned into runs; lanes dropped).
    /// O(cells of the row).
    pub fn push_cells_row(&mut self, row: MatrixRow) {
        self.push_cell_arrays(&row);
        self.end_row(strip_cells(row));
    }

    /// Pushes `row`'s cells (identity arrays as runs); the caller closes the row.
    fn push_cell_arrays(&mut self, row: &MatrixRow) {
        self.values.extend_from_slice(&row.values);
        for (arr, runs) in [
            (&row.raft_group_ids, &mut self.group_runs),
            (&row.leader_terms, &mut self.term_runs),
        ] {
            let from = runs.len();
            for &v in arr {
                push_identity(runs, from, 1, v);
            }
        }
        self.conflicts.extend_from_slice(&row.conflicts);
    }

    /// Closes the row whose cells were just pushed.
    fn end_row(&mut self, meta: MatrixRow) {
        self.header.rows.push(meta);
        self.ends.push(RowEnds {
            values: self.values.len(),
            groups: self.group_runs.len(),
            terms: self.term_runs.len(),
            conflicts: self.conflicts.len(),
        });
    }

    /// Appends the join of `members` (adjacent rows in key order, at least two): exactly
    /// the row [`join_rows`] makes of them, its identities built as runs column by column
    /// (a column keeps its identity while every non-zero member agrees, else 0) instead of
    /// as per-cell arrays. O(members × width).
    fn push_joined(&mut self, members: &[MatrixRow], max_route_ids: usize) {
        let mut meta = join_meta(members, max_route_ids);
        let width = members.iter().map(|r| r.values.len()).max().unwrap_or(0);
        let from = self.values.len();
        self.values.resize(from + width, 0);
        let sums = &mut self.values[from..];
        for m in members {
            for (s, &v) in sums.iter_mut().zip(&m.values) {
                *s = s.saturating_add(v);
            }
        }
        let (g_from, t_from) = (self.group_runs.len(), self.term_runs.len());
        for j in 0..width {
            let mut id: Option<(u64, u64)> = None;
            for m in members {
                if m.values.get(j).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let g = m.raft_group_ids.get(j).copied().unwrap_or(0);
                let t = m.leader_terms.get(j).copied().unwrap_or(0);
                match id {
                    None => id = Some((g, t)),
                    Some(known) if known != (g, t) => {
                        id = Some((0, 0));
                        break;
                    }
                    Some(_) => {}
                }
            }
            let (g, t) = id.unwrap_or((0, 0));
            push_identity(&mut self.group_runs, g_from, 1, g);
            push_identity(&mut self.term_runs, t_from, 1, t);
        }
        // Flags only when a member has some within the joined width (the usual row has none).
        if members
            .iter()
            .any(|m| m.conflicts.iter().take(width).any(|&c| c))
        {
            let c_from = self.conflicts.len();
            self.conflicts.resize(c_from + width, false);
            let flags = &mut self.conflicts[c_from..];
            for m in members {
                for (f, &c) in flags.iter_mut().zip(&m.conflicts) {
                    *f |= c;
                }
            }
            meta.conflict = true;
        }
        self.end_row(meta);
    }

    /// The matrix without cells: series, step, columns, node, generation time and every
    /// row's metadata.
    #[must_use]
    pub fn header(&self) -> &Matrix {
        &self.header
    }

    /// Names the answering node (a peer names itself before it encodes its answer).
    pub fn set_node_id(&mut self, node_id: Option<String>) {
        self.header.node_id = node_id;
    }

    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no row.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Row `i`'s cells, or `None` past the last row. O(1).
    #[must_use]
    pub fn row(&self, i: usize) -> Option<RunRow<'_>> {
        let end = *self.ends.get(i)?;
        let start = i
            .checked_sub(1)
            .and_then(|p| self.ends.get(p).copied())
            .unwrap_or_default();
        Some(RunRow {
            values: self.values.get(start.values..end.values)?,
            groups: self.group_runs.get(start.groups..end.groups)?,
            terms: self.term_runs.get(start.terms..end.terms)?,
            conflicts: self.conflicts.get(start.conflicts..end.conflicts)?,
        })
    }

    /// Every row's metadata with its cells, in row order.
    pub fn rows(&self) -> impl Iterator<Item = (&MatrixRow, RunRow<'_>)> {
        self.header
            .rows
            .iter()
            .enumerate()
            .map(|(i, meta)| (meta, self.row(i).unwrap_or_default()))
    }

    /// Every row's values, concatenated in row order.
    #[must_use]
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// The identity parts of mixed cells, sorted by (row, column).
    #[must_use]
    pub fn parts(&self) -> &[CellPart] {
        &self.parts
    }

    /// Replaces the identity parts (they must be sorted by (row, column) and add up to
    /// their cells: [`RunBoundaryMatrix::validate_parts`]).
    pub fn set_parts(&mut self, parts: Vec<CellPart>) {
        self.parts = parts;
    }

    /// Per column, the sum of the rows' values (saturating), for checking conservation.
    #[must_use]
    pub fn column_totals(&self) -> Vec<u64> {
        let mut totals = vec![0u64; self.header.column_unix_ms.len()];
        for (_, cells) in self.rows() {
            for (t, &v) in totals.iter_mut().zip(cells.values) {
                *t = t.saturating_add(v);
            }
        }
        totals
    }

    /// [`BoundaryMatrix::validate_parts`] of the per-cell form: indices in range, sorted by
    /// (row, column), every listed cell's parts adding up to its value. O(parts).
    ///
    /// # Errors
    /// A description of the first violation.
    pub fn validate_parts(&self) -> Result<(), String> {
        check_parts(&self.parts, |r, c| {
            let row = self
                .row(r)
                .ok_or_else(|| format!("part row {r} out of range"))?;
            row.values
                .get(c)
                .copied()
                .ok_or_else(|| format!("part column {c} out of range"))
        })
    }
}

/// [`coarsen_onto`] with the answer in run form: the same rows, values, identities,
/// conflict flags and parts ([`RunBoundaryMatrix::from_boundary`] of `coarsen_onto`'s
/// answer, equal to this one), without building a per-cell group or term array for a
/// joined row. Totals per column are unchanged. Pure: no lock, no I/O. O(rows × columns).
#[must_use = "returns the coarse view"]
pub fn coarsen_onto_runs(
    mut m: Matrix,
    boundaries: &Boundaries,
    max_route_ids: usize,
) -> RunBoundaryMatrix {
    let rows = std::mem::take(&mut m.rows);
    let is_write = m.series.is_write();
    let mut keyed: Vec<(usize, MatrixRow)> = rows
        .into_iter()
        .map(|r| {
            (
                boundaries.index_of(r.start.as_deref().unwrap_or_default()),
                r,
            )
        })
        .collect();
    // Stable: rows keep their key order inside one boundary row.
    keyed.sort_by_key(|(i, _)| *i);
    let width = m.column_unix_ms.len();
    let mut out = RunBoundaryMatrix::new(m);
    let groups = keyed.len().min(boundaries.len());
    out.reserve(groups, groups.saturating_mul(width));
    let mut parts = Vec::new();
    let mut members: Vec<MatrixRow> = Vec::new();
    let mut it = keyed.into_iter().peekable();
    while let Some((idx, first)) = it.next() {
        members.clear();
        members.push(first);
        while let Some((_, r)) = it.next_if(|(i, _)| *i == idx) {
            members.push(r);
        }
        let row_index = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if let [only] = members.as_mut_slice() {
            // A coarse-tier cell counted under several identities lists them in
            // `write_lanes`: they become parts, so the fold deduplicates each share.
            if is_write && !only.write_lanes.is_empty() {
                collect_parts(std::slice::from_ref(only), row_index, &mut parts);
            }
            out.push_cells_row(std::mem::take(only));
            continue;
        }
        // Reads add up whoever counted them: only writes need their identities.
        if is_write {
            collect_parts(&members, row_index, &mut parts);
        }
        out.push_joined(&members, max_route_ids);
    }
    unique_bucket_ids(&mut out.header.rows);
    out.parts = parts;
    out
}

/// Walks runs cell by cell; past the last run every cell is 0 (no identity).
struct RunCursor<'a> {
    runs: &'a [IdentityRun],
    i: usize,
    /// Cells of `runs[i]` not yet passed.
    left: usize,
}

impl<'a> RunCursor<'a> {
    fn new(runs: &'a [IdentityRun]) -> Self {
        RunCursor {
            runs,
            i: 0,
            left: runs.first().map_or(0, |r| r.len as usize),
        }
    }

    /// The current value and how many cells it still covers (unbounded past the end).
    fn peek(&mut self) -> (u64, usize) {
        while self.left == 0 {
            self.i += 1;
            match self.runs.get(self.i) {
                Some(r) => self.left = r.len as usize,
                None => return (0, usize::MAX),
            }
        }
        (self.runs[self.i].value, self.left)
    }

    /// Passes `n` cells (at most what [`RunCursor::peek`] said).
    fn advance(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n);
    }

    /// The next cell's value.
    fn next_value(&mut self) -> u64 {
        let (v, _) = self.peek();
        self.advance(1);
        v
    }
}

/// How one input's columns land on the accumulator's.
struct InputCtx {
    /// Position of the input in its batch.
    pos: usize,
    /// Accumulator column of every input column.
    col_map: Vec<usize>,
    /// No two input columns share an accumulator column.
    injective: bool,
    /// When input column `j` is accumulator column `offset + j` for every `j`.
    offset: Option<usize>,
}

/// One row of one input of a batch, placed on its accumulator row.
struct RowJob {
    /// Accumulator (boundary) row.
    idx: usize,
    /// Index of the input among the batch's inputs that were not left out.
    input: u32,
    /// Row of the input.
    row: usize,
    /// The row's identity parts: a range of the input's parts.
    parts: (usize, usize),
    /// Packed inputs: the row's group and term runs, ranges of the input's runs.
    runs: ((usize, usize), (usize, usize)),
}

/// One answer of a batch ([`ClusterFold::add_batch`]).
#[derive(Debug, Clone, Copy)]
pub enum FoldInput<'a> {
    /// An answer as [`ClusterFold::add`] takes it.
    Plain(&'a BoundaryMatrix),
    /// An answer as [`ClusterFold::add_packed`] takes it.
    Packed(&'a PackedBoundaryMatrix),
    /// An answer in run form, as [`ClusterFold::add_runs`] takes it.
    Runs(&'a RunBoundaryMatrix),
}

impl<'a> FoldInput<'a> {
    fn header(&self) -> &'a Matrix {
        match self {
            FoldInput::Plain(b) => &b.matrix,
            FoldInput::Packed(p) => &p.header,
            FoldInput::Runs(r) => &r.header,
        }
    }

    fn parts(&self) -> &'a [CellPart] {
        match self {
            FoldInput::Plain(b) => &b.parts,
            FoldInput::Packed(p) => &p.parts,
            FoldInput::Runs(r) => &r.parts,
        }
    }
}

/// One row's cells as the fold reads them.
struct RowCells<'a> {
    values: &'a [u64],
    groups: &'a [IdentityRun],
    terms: &'a [IdentityRun],
    /// The row's identity parts, sorted by column.
    parts: &'a [CellPart],
}

/// A node's boundary answer with its cells packed for the fold: what a peer's
/// [`BoundaryMatrix`] decodes to without one vector per row and array. Buffers are kept
/// between answers ([`PackedBoundaryMatrix::clear`]), so folding N answers allocates for
/// one.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedBoundaryMatrix {
    /// The matrix without cells: series, step, columns, node, generation time and every
    /// row's metadata (its cell arrays and `write_lanes` empty).
    pub header: Matrix,
    /// Every row's values, row-major: `header.rows.len() × header.column_unix_ms.len()`.
    pub values: Vec<u64>,
    /// Every row's `raft_group_ids` as runs, concatenated (a row without them has none).
    pub group_runs: Vec<IdentityRun>,
    /// Every row's `leader_terms` as runs, concatenated.
    pub term_runs: Vec<IdentityRun>,
    /// Per row, the end of its runs in `group_runs` and in `term_runs`.
    pub row_runs: Vec<(u32, u32)>,
    /// Identity parts of mixed cells, sorted by (row, column), as in [`BoundaryMatrix`].
    pub parts: Vec<CellPart>,
}

impl Default for PackedBoundaryMatrix {
    fn default() -> Self {
        PackedBoundaryMatrix {
            header: Matrix::empty(Series::Reads, 0, String::new()),
            values: Vec::new(),
            group_runs: Vec::new(),
            term_runs: Vec::new(),
            row_runs: Vec::new(),
            parts: Vec::new(),
        }
    }
}

impl PackedBoundaryMatrix {
    /// Packs `b` (the inverse of what a decoder of the boundary encoding builds):
    /// [`ClusterFold::add_packed`] of the result folds exactly like [`ClusterFold::add`] of
    /// `b`. Each row's cell arrays must be as wide as its columns (or, for identities,
    /// empty), as [`Matrix::validate`] requires. Lanes are dropped (they travel as parts).
    #[must_use]
    pub fn from_boundary(b: &BoundaryMatrix) -> Self {
        let m = &b.matrix;
        let mut out = PackedBoundaryMatrix {
            header: Matrix {
                column_unix_ms: m.column_unix_ms.clone(),
                rows: m.rows.iter().map(header_of).collect(),
                series: m.series,
                generated_at: m.generated_at.clone(),
                step_ms: m.step_ms,
                node_id: m.node_id.clone(),
            },
            parts: b.parts.clone(),
            ..PackedBoundaryMatrix::default()
        };
        let mut runs = Vec::new();
        for row in &m.rows {
            out.values.extend_from_slice(&row.values);
            runs_of(&row.raft_group_ids, &mut runs);
            out.group_runs.extend_from_slice(&runs);
            runs_of(&row.leader_terms, &mut runs);
            out.term_runs.extend_from_slice(&runs);
            out.row_runs.push((
                u32::try_from(out.group_runs.len()).unwrap_or(u32::MAX),
                u32::try_from(out.term_runs.len()).unwrap_or(u32::MAX),
            ));
        }
        out
    }

    /// Empties the answer, keeping its buffers' capacity.
    pub fn clear(&mut self) {
        self.header.rows.clear();
        self.header.column_unix_ms.clear();
        self.values.clear();
        self.group_runs.clear();
        self.term_runs.clear();
        self.row_runs.clear();
        self.parts.clear();
    }

    /// Checks what [`Matrix::validate`] and [`BoundaryMatrix::validate_parts`] check of
    /// the unpacked answer: size limits, columns in range and increasing, non-empty unique
    /// bucket ids, no inverted key range, every row's values present and its identity runs
    /// covering all its cells or none, and parts in range, sorted, adding up to their
    /// cell. O(cells + runs + parts).
    ///
    /// # Errors
    /// A description of the first violation.
    pub fn validate(&self) -> Result<(), String> {
        let h = &self.header;
        let (rows, width) = (h.rows.len(), h.column_unix_ms.len());
        // The column checks of `Matrix::validate`, on the header without its rows.
        let columns_only = Matrix {
            column_unix_ms: h.column_unix_ms.clone(),
            rows: Vec::new(),
            series: h.series,
            generated_at: String::new(),
            step_ms: h.step_ms,
            node_id: None,
        };
        columns_only.validate().map_err(|e| e.to_string())?;
        if rows.saturating_mul(width) > MAX_MATRIX_CELLS {
            return Err(format!(
                "{rows} rows x {width} columns exceed {MAX_MATRIX_CELLS} cells"
            ));
        }
        if self.values.len() != rows * width {
            return Err(format!(
                "{} values for {rows} rows x {width} columns",
                self.values.len()
            ));
        }
        if self.row_runs.len() != rows {
            return Err("identity runs are not given for every row".into());
        }
        let mut seen = std::collections::HashSet::with_capacity(rows);
        let (mut g0, mut t0) = (0usize, 0usize);
        for (r, row) in h.rows.iter().enumerate() {
            if row.bucket_id.is_empty() {
                return Err(format!("row {r} has an empty bucket id"));
            }
            if !seen.insert(row.bucket_id.as_str()) {
                return Err(format!("bucket {:?} appears twice", row.bucket_id));
            }
            if let (Some(start), Some(end)) = (&row.start, &row.end)
                && start >= end
            {
                return Err(format!("bucket {:?} has an inverted range", row.bucket_id));
            }
            if !(row.values.is_empty()
                && row.raft_group_ids.is_empty()
                && row.leader_terms.is_empty()
                && row.conflicts.is_empty()
                && row.write_lanes.is_empty())
            {
                return Err(format!(
                    "bucket {:?} carries cell arrays in its header",
                    row.bucket_id
                ));
            }
            let (g1, t1) = self.row_runs[r];
            let (g1, t1) = (g1 as usize, t1 as usize);
            for (name, runs, from, to) in [
                ("raft_group_ids", &self.group_runs, g0, g1),
                ("leader_terms", &self.term_runs, t0, t1),
            ] {
                let covered = runs
                    .get(from..to)
                    .ok_or_else(|| format!("bucket {:?}: {name} runs out of order", row.bucket_id))?
                    .iter()
                    .try_fold(0usize, |n, run| {
                        (run.len > 0).then(|| n.saturating_add(run.len as usize))
                    });
                if covered.is_none_or(|n| n != 0 && n != width) {
                    return Err(format!(
                        "bucket {:?}: {name} runs do not cover its {width} cells",
                        row.bucket_id
                    ));
                }
            }
            (g0, t0) = (g1, t1);
        }
        if g0 != self.group_runs.len() || t0 != self.term_runs.len() {
            return Err("identity runs left over after the last row".into());
        }
        let mut i = 0;
        while i < self.parts.len() {
            let p = self.parts[i];
            let (row, column) = (p.row as usize, p.column as usize);
            if row >= rows {
                return Err(format!("part row {} out of range", p.row));
            }
            if column >= width {
                return Err(format!("part column {} out of range", p.column));
            }
            let value = self.values[row * width + column];
            let mut sum = 0u64;
            let mut j = i;
            while j < self.parts.len()
                && self.parts[j].row == p.row
                && self.parts[j].column == p.column
            {
                sum = sum.saturating_add(self.parts[j].value);
                j += 1;
            }
            if sum != value {
                return Err(format!(
                    "parts of row {} column {} add up to {sum}, the cell says {value}",
                    p.row, p.column
                ));
            }
            if let Some(next) = self.parts.get(j)
                && (next.row, next.column) < (p.row, p.column)
            {
                return Err("parts are not sorted by row and column".into());
            }
            i = j;
        }
        Ok(())
    }
}

const HAS_KEY: u8 = 1;
const LEGACY: u8 = 2;
const DISTINCT: u8 = 4;
const KEY_CONFLICT: u8 = 8;
const HAS_FIRST: u8 = 16;

/// The running merge of one cell.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    /// The sum of the distinct identities' values (write series; reads keep `sums`).
    sum: u64,
    /// The best node contribution by (value, term, group).
    best: (u64, u64, u64),
    /// Writes: the first identity seen (more go to `ClusterFold::extra`).
    key: (u64, u64, u64),
    /// Writes: the first non-zero node value (to tell whether nodes disagree).
    first: u64,
    flags: u8,
}

/// Metadata of one cluster row while inputs are folded in.
#[derive(Debug, Clone)]
struct RowMeta {
    header: MatrixRow,
    /// Distinct route ids seen (complete unless `header.route_ids_truncated`).
    ids: Vec<u64>,
}

/// A row's (start, end) as it first appeared.
type KeyRange = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One (group, term) identity of a write cell beyond the first: (group, term, value,
/// conflict).
type Key = (u64, u64, u64, bool);

/// Folds nodes' [`BoundaryMatrix`] answers into the cluster matrix one at a time, with the
/// merge rules of [`crate::merge`] (columns aligned to the step, reads summed, writes
/// deduplicated per (group, term)). Memory: one accumulator cell per (row, column) of the
/// result, plus the extra identities of write cells that have several, whatever the
/// number of inputs.
#[derive(Debug)]
pub struct ClusterFold {
    series: Series,
    step_ms: u64,
    boundaries: Boundaries,
    columns: Vec<i64>,
    /// Write series: `rows × columns`, row-major (empty for reads).
    cells: Vec<Acc>,
    /// Read series: per cell the sum, and the best contribution's value and (term, group),
    /// kept apart so the hot loop streams 16 bytes per cell (empty for writes).
    /// Per cell (sum, best value), side by side: the read fold touches both for every cell,
    /// so one stream of 16 bytes instead of two halves the cache lines in flight.
    sums: Vec<[u64; 2]>,
    best_tg: Vec<(u64, u64)>,
    /// Extra write identities per (row, column timestamp).
    extra: HashMap<(u32, i64), Vec<Key>>,
    meta: Vec<Option<RowMeta>>,
    first_range: HashMap<String, KeyRange>,
    warnings: Vec<MergeWarning>,
    generated_at: Option<String>,
    node_id: Option<String>,
    inputs: usize,
    max_route_ids: usize,
    /// Columns at or after this start settle: no same-term conflict flags
    /// (see [`crate::merge::settling_from_unix_ms`]).
    settling_from: Option<i64>,
}

impl ClusterFold {
    /// An empty fold of `series` aligned to `step_ms` (0: exact timestamps) onto
    /// `boundaries`; aggregates list at most `max_route_ids` ids.
    #[must_use]
    pub fn new(series: Series, step_ms: u64, boundaries: Boundaries, max_route_ids: usize) -> Self {
        let n = boundaries.len();
        ClusterFold {
            series,
            step_ms,
            boundaries,
            columns: Vec::new(),
            cells: Vec::new(),
            sums: Vec::new(),
            best_tg: Vec::new(),
            extra: HashMap::new(),
            meta: vec![None; n],
            first_range: HashMap::new(),
            warnings: Vec::new(),
            generated_at: None,
            node_id: None,
            inputs: 0,
            max_route_ids,
            settling_from: None,
        }
    }

    /// Treats columns starting at or after `from` as settling: their writes
    /// fold by the same rules, but replicas that disagree about one (group,
    /// term) there are lagging, not conflicting (the rule and its reason:
    /// [`crate::merge::settling_from_unix_ms`]). `None` (the default) treats
    /// every column as settled.
    pub fn set_settling_from(&mut self, from: Option<i64>) {
        self.settling_from = from;
    }

    /// The boundaries folded onto.
    #[must_use]
    pub fn boundaries(&self) -> &Boundaries {
        &self.boundaries
    }

    /// Folds in the next input (the first is the local node: its `generated_at` and
    /// `node_id` are the result's). The input should be validated first; short arrays count
    /// as zeros and rows are placed by their start key, so a malformed input cannot make
    /// this panic. Warnings name the input by its position among all the inputs folded
    /// ([`ClusterFold::add`], [`ClusterFold::add_packed`], [`ClusterFold::add_batch`]).
    pub fn add(&mut self, input: &BoundaryMatrix) {
        self.add_batch(&[FoldInput::Plain(input)]);
    }

    /// Folds in the next input in its packed form (what a peer's boundary answer decodes
    /// to without building a [`Matrix`] of it): the same result as [`ClusterFold::add`] of
    /// the same answer. The input should pass [`PackedBoundaryMatrix::validate`] first; a
    /// malformed one cannot make this panic (missing cells count as zeros).
    pub fn add_packed(&mut self, input: &PackedBoundaryMatrix) {
        self.add_batch(&[FoldInput::Packed(input)]);
    }

    /// Folds in the next input in run form (a source's own answer, [`coarsen_onto_runs`]):
    /// the same result as [`ClusterFold::add`] of its per-cell form. The same rules for
    /// malformed inputs as [`ClusterFold::add`]. Pure; takes no lock.
    pub fn add_runs(&mut self, input: &RunBoundaryMatrix) {
        self.add_batch(&[FoldInput::Runs(input)]);
    }

    /// Folds in several inputs at once, with exactly the result (matrix, warnings and their
    /// order) of adding them one by one in slice order, but row by row across the inputs:
    /// every accumulator row is read and written once per batch instead of once per input,
    /// while it sits in cache, which is what the fold costs (it is bound by memory, not
    /// arithmetic). Per accumulator cell the contributions still arrive in input order,
    /// then row order, as one by one, so even saturated sums are the same. The same rules
    /// for malformed inputs as [`ClusterFold::add`]. Pure; O(cells + rows × log rows).
    pub fn add_batch(&mut self, inputs: &[FoldInput<'_>]) {
        // Metadata first, input by input as one by one would (warnings keep their order);
        // every row becomes a job placed on its accumulator row.
        let mut begun: Vec<(usize, Vec<i64>)> = Vec::with_capacity(inputs.len());
        let mut jobs: Vec<RowJob> = Vec::new();
        for (pos, input) in inputs.iter().enumerate() {
            let m = input.header();
            let Some((index, aligned)) = self.begin_input(m) else {
                continue;
            };
            let slot = u32::try_from(begun.len()).unwrap_or(u32::MAX);
            begun.push((pos, aligned));
            let parts = input.parts();
            let row_runs = match input {
                FoldInput::Packed(p) => p.row_runs.as_slice(),
                // Plain rows carry their arrays, run-form rows their own ranges.
                FoldInput::Plain(_) | FoldInput::Runs(_) => &[],
            };
            let (mut g0, mut t0, mut p) = (0usize, 0usize, 0usize);
            // Before the first row: `index_near` tries row 0 first.
            let mut hint = usize::MAX;
            for (r, row) in m.rows.iter().enumerate() {
                let idx = self
                    .boundaries
                    .index_near(row.start.as_deref().unwrap_or_default(), hint);
                hint = idx;
                self.fold_meta(idx, row, index);
                // The same walks over parts and runs as a fold of this input alone, so a
                // malformed input lands the same shares on the same rows.
                while parts.get(p).is_some_and(|x| (x.row as usize) < r) {
                    p += 1;
                }
                let from = p;
                while parts.get(p).is_some_and(|x| x.row as usize == r) {
                    p += 1;
                }
                let (g1, t1) = row_runs
                    .get(r)
                    .map_or((g0, t0), |&(g, t)| (g as usize, t as usize));
                jobs.push(RowJob {
                    idx,
                    input: slot,
                    row: r,
                    parts: (from, p),
                    runs: ((g0, g1), (t0, t1)),
                });
                (g0, t0) = (g1.max(g0), t1.max(t0));
            }
        }
        if jobs.is_empty() {
            return;
        }
        // Column maps against the accumulator's final columns: a later input of the batch
        // may have widened them, which moved the earlier inputs' cells along.
        let ctxs: Vec<InputCtx> = begun
            .iter()
            .map(|(pos, aligned)| self.input_ctx(*pos, aligned))
            .collect();
        // Unique keys: (accumulator row, input, row), so unstable is deterministic.
        jobs.sort_unstable_by_key(|j| (j.idx, j.input, j.row));
        let (mut groups, mut terms) = (Vec::new(), Vec::new());
        for job in &jobs {
            let ctx = &ctxs[job.input as usize];
            let input = inputs[ctx.pos];
            let r = job.row;
            let parts = input
                .parts()
                .get(job.parts.0..job.parts.1)
                .unwrap_or_default();
            let cells = match input {
                FoldInput::Packed(p) => {
                    let width = p.header.column_unix_ms.len();
                    let ((g0, g1), (t0, t1)) = job.runs;
                    RowCells {
                        values: p.values.get(r * width..(r + 1) * width).unwrap_or_default(),
                        groups: p.group_runs.get(g0..g1).unwrap_or_default(),
                        terms: p.term_runs.get(t0..t1).unwrap_or_default(),
                        parts,
                    }
                }
                FoldInput::Runs(rb) => {
                    let row = rb.row(r).unwrap_or_default();
                    RowCells {
                        values: row.values,
                        groups: row.groups,
                        terms: row.terms,
                        parts,
                    }
                }
                FoldInput::Plain(b) => {
                    let row = &b.matrix.rows[r];
                    runs_of(&row.raft_group_ids, &mut groups);
                    runs_of(&row.leader_terms, &mut terms);
                    RowCells {
                        values: &row.values,
                        groups: &groups,
                        terms: &terms,
                        parts,
                    }
                }
            };
            self.fold_row(ctx, job.idx, &cells);
        }
    }

    /// Counts the input, records what the first one names, checks series and step, and
    /// widens the accumulator to the input's columns; returns the input's position among
    /// all inputs and its columns aligned to the step, or `None` when it is left out.
    fn begin_input(&mut self, m: &Matrix) -> Option<(usize, Vec<i64>)> {
        let index = self.inputs;
        self.inputs += 1;
        if index == 0 {
            self.generated_at = Some(m.generated_at.clone());
            self.node_id = m.node_id.clone();
        }
        if m.series != self.series {
            self.warnings.push(MergeWarning {
                code: WarningCode::SeriesMismatch,
                input: index,
                bucket_id: None,
                detail: format!(
                    "input carries series {}, the merge is of {}; input left out",
                    m.series, self.series
                ),
            });
            return None;
        }
        let step = self.step_ms;
        if step > 0 && m.step_ms != 0 && m.step_ms != step {
            self.warnings.push(MergeWarning {
                code: WarningCode::StepMismatch,
                input: index,
                bucket_id: None,
                detail: format!(
                    "input step is {} ms, merge step is {step} ms; columns were aligned",
                    m.step_ms
                ),
            });
        }
        let finer = m.step_ms != 0 && m.step_ms < step;
        let aligned: Vec<i64> = m
            .column_unix_ms
            .iter()
            .map(|&t| match (step, finer) {
                (0, _) => t,
                (_, true) => align_down(t, step),
                (_, false) => align_nearest(t, step),
            })
            .collect();
        self.ensure_columns(&aligned);
        Some((index, aligned))
    }

    /// How the input at `pos` of a batch, with columns `aligned`, lands on the
    /// accumulator's current columns.
    fn input_ctx(&self, pos: usize, aligned: &[i64]) -> InputCtx {
        let col_map: Vec<usize> = aligned
            .iter()
            .map(|t| self.columns.binary_search(t).unwrap_or(0))
            .collect();
        // Input columns are sorted, so the map is injective unless two columns of this
        // node align into one window (a finer step or jitter): then that node counted both
        // and they are added up first.
        let injective = col_map.windows(2).all(|w| w[0] < w[1]);
        let offset = col_map
            .windows(2)
            .all(|w| w[1] == w[0] + 1)
            .then(|| col_map.first().copied().unwrap_or(0));
        InputCtx {
            pos,
            col_map,
            injective,
            offset,
        }
    }

    /// Folds one row of the input `ctx` describes into accumulator row `idx`.
    fn fold_row(&mut self, ctx: &InputCtx, idx: usize, cells: &RowCells<'_>) {
        let width = self.columns.len();
        let col_map = &ctx.col_map;
        if ctx.injective && !self.series.is_write() {
            // The common read case: one contribution per cell, summed; parts only name
            // identities, which reads do not deduplicate by.
            let base = idx * width;
            let (Some(sums), Some(best_tg)) = (
                self.sums.get_mut(base..base + width),
                self.best_tg.get_mut(base..base + width),
            ) else {
                return;
            };
            let n = cells.values.len().min(col_map.len());
            let (mut gc, mut tc) = (RunCursor::new(cells.groups), RunCursor::new(cells.terms));
            let mut j = 0;
            while j < n {
                // A segment where the row's (group, term) stays the same.
                let (g, gl) = gc.peek();
                let (t, tl) = tc.peek();
                let seg = gl.min(tl).min(n - j);
                let tg = (t, g);
                let values = &cells.values[j..j + seg];
                let fold = |v: u64, [s, bv]: &mut [u64; 2], btg: &mut (u64, u64)| {
                    *s = s.saturating_add(v);
                    if v > *bv || (v == *bv && tg > *btg) {
                        *bv = v;
                        *btg = tg;
                    }
                };
                match ctx.offset {
                    // The input's columns are a contiguous run of the accumulator's (the
                    // normal case): slices side by side, no per-cell lookup or check.
                    Some(off) if off + j + seg <= width => {
                        let at = off + j..off + j + seg;
                        for ((&v, cell), btg) in values
                            .iter()
                            .zip(&mut sums[at.clone()])
                            .zip(&mut best_tg[at])
                        {
                            if v != 0 {
                                fold(v, cell, btg);
                            }
                        }
                    }
                    _ => {
                        for (&v, &u) in values.iter().zip(&col_map[j..j + seg]) {
                            if v == 0 {
                                continue;
                            }
                            if let (Some(cell), Some(btg)) = (sums.get_mut(u), best_tg.get_mut(u)) {
                                fold(v, cell, btg);
                            }
                        }
                    }
                }
                gc.advance(seg);
                tc.advance(seg);
                j += seg;
            }
            return;
        }
        let injective = ctx.injective;
        let mut shares: Vec<(u64, u64, u64)> = Vec::new();
        let mut slots: Vec<(u64, u64, u64)> = Vec::new();
        let mut slot_shares: Vec<Vec<(u64, u64, u64)>> = Vec::new();
        if !injective {
            slots.resize(width, (0, 0, 0));
            slot_shares.resize(width, Vec::new());
        }
        let parts = cells.parts;
        let mut p = 0;
        let (mut gc, mut tc) = (RunCursor::new(cells.groups), RunCursor::new(cells.terms));
        for (j, &u) in col_map.iter().enumerate() {
            let v = cells.values.get(j).copied().unwrap_or(0);
            let g = gc.next_value();
            let t = tc.next_value();
            // The identity parts of this cell, if the node sent any.
            shares.clear();
            while parts.get(p).is_some_and(|x| (x.column as usize) < j) {
                p += 1;
            }
            while let Some(x) = parts.get(p).filter(|x| x.column as usize == j) {
                shares.push((x.group, x.term, x.value));
                p += 1;
            }
            if v == 0 {
                continue;
            }
            if injective {
                let s = (!shares.is_empty()).then_some(shares.as_slice());
                self.fold_cell(idx, u, v, g, t, s);
                continue;
            }
            if shares.is_empty() {
                shares.push((g, t, v));
            }
            let Some(list) = slot_shares.get_mut(u) else {
                continue;
            };
            for &(sg, st, sv) in &shares {
                match list.iter_mut().find(|k| k.0 == sg && k.1 == st) {
                    Some(k) => k.2 = k.2.saturating_add(sv),
                    None => list.push((sg, st, sv)),
                }
            }
            let slot = &mut slots[u];
            if v > slot.0 {
                slot.1 = g;
                slot.2 = t;
            }
            slot.0 = slot.0.saturating_add(v);
        }
        if !injective {
            for u in 0..width {
                let (v, g, t) = slots[u];
                if v == 0 {
                    continue;
                }
                let list = std::mem::take(&mut slot_shares[u]);
                let s = (list.len() > 1).then_some(list.as_slice());
                let (g, t) = if list.len() == 1 {
                    (list[0].0, list[0].1)
                } else {
                    (g, t)
                };
                self.fold_cell(idx, u, v, g, t, s);
            }
        }
    }

    /// Widens the accumulator to the union of its columns and `more` (rare after the first
    /// input: nodes of one cluster share the step's windows).
    fn ensure_columns(&mut self, more: &[i64]) {
        let missing: Vec<i64> = more
            .iter()
            .copied()
            .filter(|t| self.columns.binary_search(t).is_err())
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut columns = self.columns.clone();
        columns.extend(missing);
        columns.sort_unstable();
        columns.dedup();
        let rows = self.boundaries.len();
        let map: Vec<usize> = self
            .columns
            .iter()
            .map(|t| columns.binary_search(t).unwrap_or(0))
            .collect();
        let (old_w, new_w) = (self.columns.len(), columns.len());
        if self.series.is_write() {
            self.cells = remap(&self.cells, rows, old_w, &map, new_w);
        } else {
            self.sums = remap(&self.sums, rows, old_w, &map, new_w);
            self.best_tg = remap(&self.best_tg, rows, old_w, &map, new_w);
        }
        self.columns = columns;
    }

    fn fold_cell(
        &mut self,
        row: usize,
        col: usize,
        v: u64,
        g: u64,
        t: u64,
        shares: Option<&[(u64, u64, u64)]>,
    ) {
        let width = self.columns.len();
        let ts = self.columns[col];
        let i = row * width + col;
        if !self.series.is_write() {
            if let (Some([sum, bv]), Some(btg)) = (self.sums.get_mut(i), self.best_tg.get_mut(i)) {
                *sum = sum.saturating_add(v);
                if (v, t, g) > (*bv, btg.0, btg.1) {
                    *bv = v;
                    *btg = (t, g);
                }
            }
            return;
        }
        let Some(acc) = self.cells.get_mut(i) else {
            return;
        };
        // The node's identity for ranking: its own, or its largest share's.
        let (rg, rt) = match shares {
            Some(s) => s
                .iter()
                .max_by_key(|k| (k.2, k.1, k.0))
                .map_or((g, t), |k| (k.0, k.1)),
            None => (g, t),
        };
        if (v, rt, rg) > acc.best {
            acc.best = (v, rt, rg);
        }
        if acc.flags & HAS_FIRST == 0 {
            acc.flags |= HAS_FIRST;
            acc.first = v;
        } else if acc.first != v {
            acc.flags |= DISTINCT;
        }
        let single = [(g, t, v)];
        let shares = shares.unwrap_or(&single);
        let row32 = u32::try_from(row).unwrap_or(u32::MAX);
        for &(sg, st, sv) in shares {
            if sv == 0 {
                continue;
            }
            if sg == 0 || st == 0 {
                acc.flags |= LEGACY;
                continue;
            }
            if acc.flags & HAS_KEY == 0 {
                acc.flags |= HAS_KEY;
                acc.key = (sg, st, sv);
                acc.sum = sv;
                continue;
            }
            if acc.key.0 == sg && acc.key.1 == st {
                if acc.key.2 != sv {
                    acc.flags |= KEY_CONFLICT;
                    if sv > acc.key.2 {
                        acc.sum = acc.sum.saturating_sub(acc.key.2).saturating_add(sv);
                        acc.key.2 = sv;
                    }
                }
                continue;
            }
            let list = self.extra.entry((row32, ts)).or_default();
            match list.iter_mut().find(|k| k.0 == sg && k.1 == st) {
                Some(k) => {
                    if k.2 != sv {
                        k.3 = true;
                        if sv > k.2 {
                            acc.sum = acc.sum.saturating_sub(k.2).saturating_add(sv);
                            k.2 = sv;
                        }
                    }
                }
                None => {
                    list.push((sg, st, sv, false));
                    acc.sum = acc.sum.saturating_add(sv);
                }
            }
        }
    }

    fn fold_meta(&mut self, idx: usize, row: &MatrixRow, input: usize) {
        let ids_of = |r: &MatrixRow| -> Vec<u64> {
            if r.aggregate {
                r.route_ids.clone()
            } else {
                parse_route_bucket_id(&r.bucket_id)
                    .map(|(id, _)| vec![id])
                    .unwrap_or_else(|| r.route_ids.clone())
            }
        };
        // Aggregates are named after their range: only a route's range can diverge.
        if !row.aggregate {
            match self.first_range.get(&row.bucket_id) {
                Some((s, e)) if s != &row.start || e != &row.end => {
                    self.warnings.push(MergeWarning {
                        code: WarningCode::CatalogDivergence,
                        input,
                        bucket_id: Some(row.bucket_id.clone()),
                        detail: "bucket has a different key range than on an earlier node; \
                                 both ranges are counted in the row holding their start"
                            .to_owned(),
                    });
                }
                Some(_) => {}
                None => {
                    self.first_range
                        .insert(row.bucket_id.clone(), (row.start.clone(), row.end.clone()));
                }
            }
        }
        let Some(slot) = self.meta.get_mut(idx) else {
            return;
        };
        let Some(meta) = slot else {
            *slot = Some(RowMeta {
                header: header_of(row),
                ids: ids_of(row),
            });
            return;
        };
        let h = &mut meta.header;
        h.first_key = [h.first_key.take(), row.first_key.clone()]
            .into_iter()
            .flatten()
            .min();
        h.last_key = [h.last_key.take(), row.last_key.clone()]
            .into_iter()
            .flatten()
            .max();
        let same_row = !h.aggregate
            && !row.aggregate
            && bucket_base(&h.bucket_id) == bucket_base(&row.bucket_id)
            && h.start == row.start
            && h.end == row.end;
        if same_row {
            return;
        }
        // Different rows of one boundary row (another node's catalog, or a coarse row):
        // the cluster row is their aggregate. The smallest start (the earlier one on a tie)
        // and the largest end; copied only when they change (nodes sharing a catalog send
        // the same aggregate rows).
        if row.start.as_deref().unwrap_or_default() < h.start.as_deref().unwrap_or_default() {
            h.start.clone_from(&row.start);
        }
        let end = max_end(h.end.as_deref(), row.end.as_deref());
        if end != h.end.as_deref() {
            h.end = end.map(<[u8]>::to_vec);
        }
        let count_before = h.route_count.max(1);
        let same_ids = if row.aggregate {
            row.route_ids == meta.ids
        } else {
            parse_route_bucket_id(&row.bucket_id).map_or(row.route_ids == meta.ids, |(id, _)| {
                meta.ids.as_slice() == [id]
            })
        };
        // Sorted and deduplicated already and nothing new: what the sort would leave.
        if !(same_ids && meta.ids.windows(2).all(|w| w[0] < w[1])) {
            meta.ids.extend(ids_of(row));
            meta.ids.sort_unstable();
            meta.ids.dedup();
        }
        h.route_ids_truncated |= row.route_ids_truncated;
        h.route_count = if h.route_ids_truncated {
            count_before.max(row.route_count).max(meta.ids.len() as u64)
        } else {
            meta.ids.len() as u64
        };
        h.aggregate = true;
        h.label = None;
        h.conflict |= row.conflict;
    }

    /// The cluster matrix: one row per boundary row that any input had, in key order,
    /// bounded by [`MAX_MATRIX_COLUMNS`] and [`MAX_MATRIX_CELLS`] (the oldest columns go,
    /// with a warning), and the warnings found on the way.
    #[must_use = "returns the merged matrix"]
    pub fn finish(self) -> Merged {
        let ClusterFold {
            series,
            step_ms,
            columns,
            cells,
            sums,
            best_tg,
            extra,
            meta,
            mut warnings,
            generated_at,
            node_id,
            max_route_ids,
            settling_from,
            ..
        } = self;
        let width = columns.len();
        let present = meta.iter().filter(|m| m.is_some()).count();
        let max_width = MAX_MATRIX_COLUMNS.min(MAX_MATRIX_CELLS / present.max(1));
        let skip = width.saturating_sub(max_width);
        if skip > 0 {
            warnings.push(MergeWarning {
                code: WarningCode::ColumnsTruncated,
                input: 0,
                bucket_id: None,
                detail: format!(
                    "{present} rows x {width} columns exceed the merge limit; the oldest {skip} columns were left out"
                ),
            });
        }
        let mut rows = Vec::with_capacity(present);
        for (r, m) in meta.into_iter().enumerate() {
            let Some(RowMeta {
                mut header,
                mut ids,
            }) = m
            else {
                continue;
            };
            let w = width - skip;
            let mut values = vec![0u64; w];
            let mut groups = vec![0u64; w];
            let mut terms = vec![0u64; w];
            let mut conflicts: Vec<bool> = Vec::new();
            for (o, (j, &ts)) in columns.iter().enumerate().skip(skip).enumerate() {
                let i = r * width + j;
                let (value, g, t, conflict) = if series.is_write() {
                    resolve(&cells[i], extra.get(&(r as u32, ts)))
                } else {
                    let (bt, bg) = best_tg[i];
                    (sums[i][0], bg, bt, false)
                };
                values[o] = value;
                groups[o] = g;
                terms[o] = t;
                let settling = settling_from.is_some_and(|from| ts >= from);
                if conflict && !settling {
                    if conflicts.is_empty() {
                        conflicts = vec![false; w];
                    }
                    conflicts[o] = true;
                }
            }
            if header.aggregate {
                header.bucket_id = virtual_bucket_name(
                    header.start.as_deref().unwrap_or_default(),
                    header.end.as_deref(),
                );
                if ids.len() > max_route_ids {
                    ids.truncate(max_route_ids);
                    header.route_ids_truncated = true;
                }
                header.route_ids = ids;
            }
            header.conflict |= !conflicts.is_empty();
            header.values = values;
            header.raft_group_ids = groups;
            header.leader_terms = terms;
            header.conflicts = conflicts;
            rows.push(header);
        }
        unique_bucket_ids(&mut rows);
        Merged {
            matrix: Matrix {
                column_unix_ms: columns[skip..].to_vec(),
                rows,
                series,
                generated_at: generated_at.unwrap_or_default(),
                step_ms,
                node_id,
            },
            warnings,
        }
    }
}

/// `old` (`rows × old_w`) laid out on `new_w` columns, column `j` moving to `map[j]`.
fn remap<T: Copy + Default>(
    old: &[T],
    rows: usize,
    old_w: usize,
    map: &[usize],
    new_w: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); rows * new_w];
    for r in 0..rows {
        for (j, &u) in map.iter().enumerate() {
            if let Some(&v) = old.get(r * old_w + j) {
                out[r * new_w + u] = v;
            }
        }
    }
    out
}

/// The final write cell: (value, group, term, conflict), by the rules of [`crate::merge`].
fn resolve(acc: &Acc, extra: Option<&Vec<Key>>) -> (u64, u64, u64, bool) {
    let (bv, bt, bg) = acc.best;
    if acc.flags & HAS_FIRST == 0 {
        return (0, 0, 0, false);
    }
    if acc.flags & LEGACY != 0 {
        // Without identities a duplicate cannot be told from a flip: max, flag disagreement.
        return (bv, bg, bt, acc.flags & DISTINCT != 0);
    }
    let mut best = (acc.key.2, acc.key.1, acc.key.0);
    let mut conflict = acc.flags & KEY_CONFLICT != 0;
    for &(g, t, v, c) in extra.map(Vec::as_slice).unwrap_or_default() {
        conflict |= c;
        if (v, t, g) > best {
            best = (v, t, g);
        }
    }
    (acc.sum, best.2, best.1, conflict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::wire::CellLane;
    use crate::merge::{MAX_LISTED_ROUTE_IDS, MergeOptions, merge};

    const COLS: usize = 6;

    fn key(r: u64) -> Vec<u8> {
        format!("k{r:04}").into_bytes()
    }

    /// Node `n` of `nodes` over `routes` routes in 8 raft groups (route % 8 + 1): reads
    /// everywhere; writes counted by the group's leader (group % nodes) in term 5; groups 3
    /// and 6 flip leadership to the next node in term 6 for the last two columns (the old
    /// leader counted 2 of it in term 5); group 5's writes are also reported identically by
    /// the next node (a duplicate of one (group, term)). Route 7 is hot.
    fn node_matrix(series: Series, n: u64, nodes: u64, routes: u64) -> Matrix {
        let rows = (0..routes)
            .map(|r| {
                let group = r % 8 + 1;
                let mut values = vec![0u64; COLS];
                let mut terms = vec![0u64; COLS];
                for c in 0..COLS {
                    let base = (r * 7 + c as u64 * 3 + n) % 11 + if r == 7 { 10_000 } else { 0 };
                    if !series.is_write() {
                        values[c] = base;
                        terms[c] = 5;
                        continue;
                    }
                    let flipped = group % 3 == 0 && c >= COLS - 2;
                    let leader = if flipped {
                        (group + 1) % nodes
                    } else {
                        group % nodes
                    };
                    let dup = group == 5 && n == (leader + 1) % nodes;
                    if n == leader || dup {
                        // What the group's leader counted: the same on a duplicate.
                        values[c] =
                            (r * 7 + c as u64 * 3) % 11 + 1 + if r == 7 { 10_000 } else { 0 };
                        terms[c] = if flipped { 6 } else { 5 };
                    } else if flipped && n == group % nodes {
                        values[c] = 2;
                        terms[c] = 5;
                    }
                }
                MatrixRow {
                    bucket_id: format!("route:{r}"),
                    start: Some(key(r)),
                    end: Some(key(r + 1)),
                    route_count: 1,
                    values,
                    raft_group_ids: vec![group; COLS],
                    leader_terms: terms,
                    ..MatrixRow::default()
                }
            })
            .collect();
        Matrix {
            column_unix_ms: (0..COLS as i64).map(|c| 60_000 * (c + 1)).collect(),
            rows,
            series,
            generated_at: "2026-12-01T00:00:00Z".into(),
            step_ms: 60_000,
            node_id: Some(format!("n{n}")),
        }
    }

    fn column_totals(m: &Matrix) -> Vec<u64> {
        (0..m.column_unix_ms.len())
            .map(|j| {
                m.rows
                    .iter()
                    .map(|r| r.values.get(j).copied().unwrap_or(0))
                    .sum()
            })
            .collect()
    }

    fn two_rounds(inputs: &[Matrix], budget: usize) -> Merged {
        let totals: Vec<Vec<RowTotal>> = inputs.iter().map(row_totals).collect();
        let b = Boundaries::plan(totals.iter().map(Vec::as_slice), budget);
        assert!(b.len() <= budget.max(1));
        let mut fold = ClusterFold::new(inputs[0].series, 60_000, b.clone(), MAX_LISTED_ROUTE_IDS);
        for m in inputs {
            let coarse = coarsen_onto(m.clone(), &b, MAX_LISTED_ROUTE_IDS);
            assert_eq!(coarse.validate_parts(), Ok(()));
            assert!(coarse.matrix.rows.len() <= b.len());
            assert_eq!(column_totals(&coarse.matrix), column_totals(m));
            fold.add(&coarse);
        }
        fold.finish()
    }

    #[test]
    fn cluster_totals_are_conserved_for_every_series_and_budget() {
        for series in Series::ALL {
            let nodes = 5;
            let inputs: Vec<Matrix> = (0..nodes)
                .map(|n| node_matrix(series, n, nodes, 60))
                .collect();
            let oracle = merge(
                &inputs,
                &MergeOptions {
                    series,
                    step_ms: 60_000,
                    row_budget: None,
                    settling_from_unix_ms: None,
                },
            )
            .matrix;
            for budget in [1, 2, 7, 16, 59, 60, 200] {
                let got = two_rounds(&inputs, budget).matrix;
                assert!(
                    got.rows.len() <= budget,
                    "{series} {budget}: {} rows",
                    got.rows.len()
                );
                assert_eq!(got.validate(), Ok(()));
                assert_eq!(got.column_unix_ms, oracle.column_unix_ms);
                assert_eq!(
                    column_totals(&got),
                    column_totals(&oracle),
                    "{series} at budget {budget}"
                );
                if !series.is_write() {
                    let node_sum: Vec<u64> = (0..COLS)
                        .map(|j| inputs.iter().map(|m| column_totals(m)[j]).sum())
                        .collect();
                    assert_eq!(column_totals(&got), node_sum);
                }
                let routes: u64 = got.rows.iter().map(|r| r.route_count).sum();
                assert_eq!(routes, 60, "{series} at budget {budget}");
            }
        }
    }

    #[test]
    fn reads_on_shifted_and_gapped_columns_fold_like_the_merge() {
        // One node a step ahead (its columns a shifted run of the cluster's), one missing a
        // column in the middle (not a contiguous run): cell by cell, values and the best
        // contribution's identity are the merge's.
        let base = node_matrix(Series::Reads, 0, 3, 12);
        let mut ahead = node_matrix(Series::Reads, 1, 3, 12);
        for c in &mut ahead.column_unix_ms {
            *c += 60_000;
        }
        let mut gapped = node_matrix(Series::Reads, 2, 3, 12);
        gapped.column_unix_ms.remove(2);
        for r in &mut gapped.rows {
            r.values.remove(2);
            r.raft_group_ids.remove(2);
            r.leader_terms.remove(2);
            r.leader_terms[0] = 9;
        }
        let inputs = [base, ahead, gapped];
        let oracle = merge(
            &inputs,
            &MergeOptions {
                series: Series::Reads,
                step_ms: 60_000,
                row_budget: None,
                settling_from_unix_ms: None,
            },
        )
        .matrix;
        let (plain, packed) = both_folds(&inputs, 12);
        assert_eq!(plain.matrix, packed.matrix);
        let got = packed.matrix;
        assert_eq!(got.column_unix_ms, oracle.column_unix_ms);
        assert_eq!(got.rows.len(), oracle.rows.len());
        for (g, o) in got.rows.iter().zip(&oracle.rows) {
            assert_eq!(g.values, o.values, "{}", g.bucket_id);
            assert_eq!(g.leader_terms, o.leader_terms, "{}", g.bucket_id);
            assert_eq!(g.raft_group_ids, o.raft_group_ids, "{}", g.bucket_id);
        }
    }

    #[test]
    fn the_hot_row_stays_its_own_row_with_its_id_and_exact_values() {
        let nodes = 4;
        let inputs: Vec<Matrix> = (0..nodes)
            .map(|n| node_matrix(Series::Writes, n, nodes, 40))
            .collect();
        let oracle = merge(
            &inputs,
            &MergeOptions {
                series: Series::Writes,
                step_ms: 60_000,
                row_budget: None,
                settling_from_unix_ms: None,
            },
        )
        .matrix;
        let got = two_rounds(&inputs, 8).matrix;
        let hot = got
            .rows
            .iter()
            .find(|r| r.bucket_id == "route:7")
            .expect("hot row kept");
        let want = oracle
            .rows
            .iter()
            .find(|r| r.bucket_id == "route:7")
            .expect("oracle");
        assert!(!hot.aggregate);
        assert_eq!(hot.values, want.values);
        assert_eq!(hot.leader_terms, want.leader_terms);
        assert!(got.rows.iter().filter(|r| r.aggregate).count() >= 1);
    }

    #[test]
    fn mixed_identities_in_a_coarse_cell_travel_as_parts_and_dedup_per_identity() {
        // Node a leads route 1 (group 1) and route 2 (group 2); node b duplicates route 1.
        let row = |id: u64, g: u64, v: u64| MatrixRow {
            bucket_id: format!("route:{id}"),
            start: Some(key(id)),
            end: Some(key(id + 1)),
            route_count: 1,
            values: vec![v],
            raft_group_ids: vec![g],
            leader_terms: vec![9],
            ..MatrixRow::default()
        };
        let m = |rows: Vec<MatrixRow>| Matrix {
            column_unix_ms: vec![60_000],
            rows,
            series: Series::Writes,
            generated_at: String::new(),
            step_ms: 60_000,
            node_id: None,
        };
        let a = m(vec![row(1, 1, 5), row(2, 2, 3)]);
        let b = m(vec![row(1, 1, 5)]);
        let got = two_rounds(&[a.clone(), b], 1).matrix;
        assert_eq!(got.rows.len(), 1);
        assert_eq!(got.rows[0].values, vec![8], "5 deduplicated, plus 3");
        assert!(!got.rows[0].conflict);
        let bnd = Boundaries::plan([row_totals(&a).as_slice()], 1);
        let coarse = coarsen_onto(a, &bnd, 256);
        assert_eq!(coarse.parts.len(), 2);
        assert_eq!(coarse.matrix.rows[0].leader_terms, vec![0]);
        // Without parts the coarse cell would lack an identity and fall back to max (5).
    }

    #[test]
    fn coarse_tier_cells_with_write_lanes_fold_exactly_like_the_merge() {
        // A coarse history column spans a leader change of group 1: the old leader (node a)
        // counted 40 in term 3 and the new one (node b) 25 in term 4; each replica's cell
        // lists both shares in `write_lanes` (every replica applies every write). Three
        // replicas, asked alone in their boundary row or joined with a neighbour, must fold
        // to 65, as the one-round merge says.
        let lanes = vec![
            CellLane {
                column: 0,
                group: 1,
                term: 3,
                value: 40,
            },
            CellLane {
                column: 0,
                group: 1,
                term: 4,
                value: 25,
            },
        ];
        let row = |id: u64, v: u64, lanes: Vec<CellLane>| MatrixRow {
            bucket_id: format!("route:{id}"),
            start: Some(key(id)),
            end: Some(key(id + 1)),
            route_count: 1,
            values: vec![v],
            raft_group_ids: vec![1],
            leader_terms: vec![3],
            write_lanes: lanes,
            ..MatrixRow::default()
        };
        let node = |n: u64| Matrix {
            column_unix_ms: vec![600_000],
            rows: vec![row(1, 65, lanes.clone()), row(2, 7, Vec::new())],
            series: Series::Writes,
            generated_at: String::new(),
            step_ms: 600_000,
            node_id: Some(format!("n{n}")),
        };
        let inputs = [node(1), node(2), node(3)];
        let one_round = merge(
            &inputs,
            &MergeOptions {
                series: Series::Writes,
                step_ms: 600_000,
                row_budget: None,
                settling_from_unix_ms: None,
            },
        )
        .matrix;
        assert_eq!(column_totals(&one_round), vec![72]);
        for budget in [1, 2] {
            let totals: Vec<Vec<RowTotal>> = inputs.iter().map(row_totals).collect();
            let b = Boundaries::plan(totals.iter().map(Vec::as_slice), budget);
            let mut fold = ClusterFold::new(Series::Writes, 600_000, b.clone(), 256);
            for m in &inputs {
                let coarse = coarsen_onto(m.clone(), &b, 256);
                assert_eq!(coarse.validate_parts(), Ok(()));
                assert!(!coarse.parts.is_empty(), "lanes travel as parts");
                fold.add(&coarse);
            }
            let got = fold.finish().matrix;
            assert_eq!(column_totals(&got), vec![72], "budget {budget}");
            assert!(got.rows.iter().all(|r| !r.conflict), "budget {budget}");
        }
    }

    #[test]
    fn identity_less_contributions_fall_back_to_max_with_a_conflict() {
        let mut a = node_matrix(Series::Writes, 0, 1, 3);
        let mut b = a.clone();
        for r in a.rows.iter_mut().chain(b.rows.iter_mut()) {
            r.leader_terms = vec![0; COLS];
        }
        b.rows[0].values[0] += 4;
        let got = two_rounds(&[a.clone(), b.clone()], 1).matrix;
        let want: u64 = a
            .rows
            .iter()
            .map(|r| r.values[0])
            .sum::<u64>()
            .max(b.rows.iter().map(|r| r.values[0]).sum());
        assert_eq!(got.rows[0].values[0], want);
        assert!(got.rows[0].conflict);
    }

    #[test]
    fn a_replica_behind_in_a_settling_column_is_lag_not_a_conflict() {
        // One group, one term, both nodes replicas of it: the second (`b`) applied one
        // write fewer in the oldest and in the newest column.
        let b = node_matrix(Series::Writes, 0, 1, 3);
        let mut a = b.clone();
        a.rows[0].values[0] += 1;
        a.rows[0].values[COLS - 1] += 1;
        let newest = a.column_unix_ms[COLS - 1];
        let totals: Vec<Vec<RowTotal>> = [&a, &b].iter().map(|m| row_totals(m)).collect();
        let bounds = Boundaries::plan(totals.iter().map(Vec::as_slice), 16);
        let mut fold = ClusterFold::new(Series::Writes, 60_000, bounds.clone(), 256);
        fold.set_settling_from(Some(newest));
        for m in [&a, &b] {
            fold.add(&coarsen_onto(m.clone(), &bounds, 256));
        }
        let got = fold.finish().matrix;
        let row = got
            .rows
            .iter()
            .find(|r| r.start == a.rows[0].start)
            .expect("row of the first route");
        assert_eq!(
            row.values[0], a.rows[0].values[0],
            "max: the caught-up count"
        );
        assert_eq!(row.values[COLS - 1], a.rows[0].values[COLS - 1]);
        let mut want = vec![false; COLS];
        want[0] = true;
        assert_eq!(
            row.conflicts, want,
            "settled column conflicts, settling one does not"
        );
        assert!(row.conflict);
    }

    /// Folds every input twice, through `add` and through `add_packed` of its packed form.
    fn both_folds(inputs: &[Matrix], budget: usize) -> (Merged, Merged) {
        let totals: Vec<Vec<RowTotal>> = inputs.iter().map(row_totals).collect();
        let b = Boundaries::plan(totals.iter().map(Vec::as_slice), budget);
        let step = inputs[0].step_ms;
        let mut plain = ClusterFold::new(inputs[0].series, step, b.clone(), MAX_LISTED_ROUTE_IDS);
        let mut packed = ClusterFold::new(inputs[0].series, step, b.clone(), MAX_LISTED_ROUTE_IDS);
        for m in inputs {
            let coarse = coarsen_onto(m.clone(), &b, MAX_LISTED_ROUTE_IDS);
            let p = PackedBoundaryMatrix::from_boundary(&coarse);
            assert_eq!(p.validate(), Ok(()));
            plain.add(&coarse);
            packed.add_packed(&p);
        }
        (plain.finish(), packed.finish())
    }

    #[test]
    fn packed_answers_fold_exactly_like_unpacked_ones() {
        for series in Series::ALL {
            let nodes = 5;
            let inputs: Vec<Matrix> = (0..nodes)
                .map(|n| node_matrix(series, n, nodes, 60))
                .collect();
            for budget in [1, 3, 16, 60] {
                let (plain, packed) = both_folds(&inputs, budget);
                assert_eq!(plain.matrix, packed.matrix, "{series} at budget {budget}");
                assert_eq!(
                    plain.warnings, packed.warnings,
                    "{series} at budget {budget}"
                );
            }
        }
        // A node on a finer step (two of its columns land in one window, the slow path) and
        // one whose rows lack identities.
        let mut finer = node_matrix(Series::Writes, 1, 3, 20);
        finer.step_ms = 30_000;
        finer.column_unix_ms = (0..COLS as i64).map(|c| 60_000 + 30_000 * c).collect();
        let mut bare = node_matrix(Series::Writes, 2, 3, 20);
        for r in &mut bare.rows {
            r.raft_group_ids.clear();
            r.leader_terms.clear();
        }
        let inputs = [node_matrix(Series::Writes, 0, 3, 20), finer, bare];
        for budget in [1, 4, 20] {
            let (plain, packed) = both_folds(&inputs, budget);
            assert_eq!(plain.matrix, packed.matrix, "budget {budget}");
            assert_eq!(plain.warnings, packed.warnings, "budget {budget}");
        }
    }

    /// Folds `inputs` one by one (packed, plain and run form in turn) and in batches of
    /// `size` (the same rotation), and returns both results.
    fn one_by_one_and_batched(inputs: &[Matrix], budget: usize, size: usize) -> (Merged, Merged) {
        let totals: Vec<Vec<RowTotal>> = inputs.iter().map(row_totals).collect();
        let b = Boundaries::plan(totals.iter().map(Vec::as_slice), budget);
        let (series, step) = (inputs[0].series, inputs[0].step_ms);
        let coarse: Vec<BoundaryMatrix> = inputs
            .iter()
            .map(|m| coarsen_onto(m.clone(), &b, MAX_LISTED_ROUTE_IDS))
            .collect();
        let packed: Vec<PackedBoundaryMatrix> = coarse
            .iter()
            .map(PackedBoundaryMatrix::from_boundary)
            .collect();
        let runs: Vec<RunBoundaryMatrix> = coarse
            .iter()
            .map(RunBoundaryMatrix::from_boundary)
            .collect();
        let input = |i: usize| match i % 3 {
            0 => FoldInput::Packed(&packed[i]),
            1 => FoldInput::Plain(&coarse[i]),
            _ => FoldInput::Runs(&runs[i]),
        };
        let mut one = ClusterFold::new(series, step, b.clone(), MAX_LISTED_ROUTE_IDS);
        for i in 0..inputs.len() {
            match input(i) {
                FoldInput::Packed(p) => one.add_packed(p),
                FoldInput::Plain(c) => one.add(c),
                FoldInput::Runs(r) => one.add_runs(r),
            }
        }
        let mut batched = ClusterFold::new(series, step, b, MAX_LISTED_ROUTE_IDS);
        let all: Vec<FoldInput<'_>> = (0..inputs.len()).map(input).collect();
        for chunk in all.chunks(size) {
            batched.add_batch(chunk);
        }
        (one.finish(), batched.finish())
    }

    #[test]
    fn batched_folds_equal_one_by_one_folds_with_conflicting_and_missing_identities() {
        for series in Series::ALL {
            let nodes = 5;
            let inputs: Vec<Matrix> = (0..nodes)
                .map(|n| node_matrix(series, n, nodes, 60))
                .collect();
            for budget in [1, 3, 16, 60] {
                for size in [2, 3, 5] {
                    let (one, batched) = one_by_one_and_batched(&inputs, budget, size);
                    assert_eq!(one.matrix, batched.matrix, "{series} {budget} {size}");
                    assert_eq!(one.warnings, batched.warnings, "{series} {budget} {size}");
                }
            }
        }
        // Writes whose duplicates of one (group, term) disagree (a conflict), rows without
        // identities (max with a conflict), a finer step (two columns in one window), a
        // node ahead by a column (the accumulator widens in the middle of a batch), rows out
        // of key order, another series (left out with a warning) and a diverging catalog.
        let base = node_matrix(Series::Writes, 0, 3, 20);
        let mut conflicting = base.clone();
        conflicting.node_id = Some("dup".into());
        for r in &mut conflicting.rows {
            for v in r.values.iter_mut().filter(|v| **v > 0) {
                *v += 3;
            }
        }
        let mut bare = node_matrix(Series::Writes, 2, 3, 20);
        for r in &mut bare.rows {
            r.raft_group_ids.clear();
            r.leader_terms.clear();
        }
        let mut finer = node_matrix(Series::Writes, 1, 3, 20);
        finer.step_ms = 30_000;
        finer.column_unix_ms = (0..COLS as i64).map(|c| 60_000 + 30_000 * c).collect();
        let mut ahead = node_matrix(Series::Writes, 1, 3, 20);
        for c in &mut ahead.column_unix_ms {
            *c += 60_000;
        }
        let mut reversed = node_matrix(Series::Writes, 2, 3, 20);
        reversed.rows.reverse();
        let mut other_series = node_matrix(Series::Reads, 1, 3, 20);
        other_series.series = Series::Reads;
        let mut diverging = node_matrix(Series::Writes, 1, 3, 20);
        diverging.rows[3].end = Some(key(9));
        let inputs = [
            base,
            conflicting,
            bare,
            finer,
            ahead,
            reversed,
            other_series,
            diverging,
        ];
        for budget in [1, 4, 20] {
            for size in [2, 3, 4, 8] {
                let (one, batched) = one_by_one_and_batched(&inputs, budget, size);
                assert_eq!(one.matrix, batched.matrix, "budget {budget} size {size}");
                assert_eq!(
                    one.warnings, batched.warnings,
                    "budget {budget} size {size}"
                );
                assert!(
                    one.matrix.rows.iter().any(|r| r.conflict),
                    "the conflicting duplicate is flagged"
                );
                assert!(
                    one.warnings
                        .iter()
                        .any(|w| w.code == WarningCode::SeriesMismatch && w.input == 6),
                    "the read input is left out"
                );
            }
        }
        // One big batch equals the one-round merge on the plain reads (the golden oracle).
        let reads: Vec<Matrix> = (0..4)
            .map(|n| node_matrix(Series::Reads, n, 4, 40))
            .collect();
        let oracle = merge(
            &reads,
            &MergeOptions {
                series: Series::Reads,
                step_ms: 60_000,
                row_budget: None,
                settling_from_unix_ms: None,
            },
        )
        .matrix;
        let (_, batched) = one_by_one_and_batched(&reads, 40, 4);
        assert_eq!(batched.matrix.rows.len(), oracle.rows.len());
        for (g, o) in batched.matrix.rows.iter().zip(&oracle.rows) {
            assert_eq!(g.values, o.values, "{}", g.bucket_id);
            assert_eq!(g.leader_terms, o.leader_terms, "{}", g.bucket_id);
            assert_eq!(g.raft_group_ids, o.raft_group_ids, "{}", g.bucket_id);
        }
    }

    #[test]
    fn packed_validation_refuses_what_the_matrix_checks_refuse() {
        let m = node_matrix(Series::Writes, 0, 2, 10);
        let b = Boundaries::plan([row_totals(&m).as_slice()], 3);
        let good = PackedBoundaryMatrix::from_boundary(&coarsen_onto(m, &b, 256));
        assert_eq!(good.validate(), Ok(()));
        assert!(!good.parts.is_empty(), "the sample has mixed cells");
        let bad = |f: &dyn Fn(&mut PackedBoundaryMatrix)| {
            let mut p = good.clone();
            f(&mut p);
            p.validate()
        };
        assert!(
            bad(&|p| {
                p.values.pop();
            })
            .is_err(),
            "a missing value"
        );
        assert!(
            bad(&|p| p.header.column_unix_ms.swap(0, 1)).is_err(),
            "columns out of order"
        );
        assert!(bad(&|p| p.header.rows[1].bucket_id = p.header.rows[0].bucket_id.clone()).is_err());
        assert!(bad(&|p| p.header.rows[0].bucket_id.clear()).is_err());
        assert!(
            bad(&|p| p.header.rows[0].values = vec![1; COLS]).is_err(),
            "cells in the header"
        );
        assert!(
            bad(&|p| p.group_runs[0].len += 1).is_err(),
            "runs past the row"
        );
        assert!(bad(&|p| p.group_runs[0].len = 0).is_err(), "an empty run");
        assert!(
            bad(&|p| {
                p.row_runs.pop();
            })
            .is_err()
        );
        assert!(
            bad(&|p| p.parts[0].value += 1).is_err(),
            "parts off their cell"
        );
        assert!(bad(&|p| p.parts[0].column = COLS as u32).is_err());
        assert!(bad(&|p| p.parts.reverse()).is_err(), "parts out of order");
        let mut empty = PackedBoundaryMatrix::default();
        assert_eq!(empty.validate(), Ok(()));
        empty.clear();
        assert_eq!(empty, PackedBoundaryMatrix::default());
    }

    #[test]
    fn the_plan_merges_node_lists_like_one_sort_of_every_entry() {
        // Overlapping catalogs, a split route (two rows with one start), an empty list and
        // one list out of order.
        let list = |n: u64, routes: std::ops::Range<u64>| -> Vec<RowTotal> {
            routes
                .map(|r| RowTotal {
                    start: key(r),
                    total: (r * 31 + n * 7) % 13 + u64::from(r == 40) * 1_000,
                })
                .collect()
        };
        let mut split = list(3, 20..60);
        split.insert(5, split[5].clone());
        let mut unsorted = list(4, 0..30);
        unsorted.reverse();
        let nodes = [list(0, 0..50), list(1, 10..70), Vec::new(), split, unsorted];
        for budget in [1, 2, 9, 33, 69, 70, 500] {
            let got = Boundaries::plan(nodes.iter().map(Vec::as_slice), budget);
            // The reference: every entry sorted, equal starts added up.
            let mut all: Vec<(&[u8], u64)> = nodes
                .iter()
                .flatten()
                .map(|t| (t.start.as_slice(), t.total))
                .collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            let mut starts: Vec<&[u8]> = Vec::new();
            let mut totals: Vec<u64> = Vec::new();
            for (k, t) in all {
                if starts.last() == Some(&k) {
                    *totals.last_mut().expect("a total per start") += t;
                } else {
                    starts.push(k);
                    totals.push(t);
                }
            }
            let mut want: Vec<Vec<u8>> = plan_groups(&totals, budget)
                .into_iter()
                .map(|g| starts[g.start].to_vec())
                .collect();
            want[0].clear();
            assert_eq!(got.keys(), want.as_slice(), "budget {budget}");
            assert_eq!(got.is_coarse(), starts.len() > budget, "budget {budget}");
        }
    }

    #[test]
    fn boundaries_reject_bad_keys_and_place_every_key() {
        assert_eq!(
            Boundaries::from_keys(vec![]),
            Err(BoundaryError::FirstNotEmpty)
        );
        assert_eq!(
            Boundaries::from_keys(vec![b"a".to_vec()]),
            Err(BoundaryError::FirstNotEmpty)
        );
        assert_eq!(
            Boundaries::from_keys(vec![vec![], b"b".to_vec(), b"b".to_vec()]),
            Err(BoundaryError::NotIncreasing(2))
        );
        let b = Boundaries::from_keys(vec![vec![], b"b".to_vec(), b"d".to_vec()]).expect("valid");
        assert_eq!(b.index_of(b""), 0);
        assert_eq!(b.index_of(b"a"), 0);
        assert_eq!(b.index_of(b"b"), 1);
        assert_eq!(b.index_of(b"c"), 1);
        assert_eq!(b.index_of(b"zz"), 2);
        assert_eq!(Boundaries::plan(std::iter::empty(), 4).len(), 1);
    }

    #[test]
    fn parts_that_do_not_add_up_are_rejected() {
        let mut coarse = coarsen_onto(
            node_matrix(Series::Writes, 0, 2, 10),
            &Boundaries::plan(
                [row_totals(&node_matrix(Series::Writes, 0, 2, 10)).as_slice()],
                2,
            ),
            256,
        );
        coarse.parts.push(CellPart {
            row: 0,
            column: 0,
            group: 1,
            term: 1,
            value: 1,
        });
        assert!(coarse.validate_parts().is_err());
        coarse.parts = vec![CellPart {
            row: 99,
            column: 0,
            group: 1,
            term: 1,
            value: 1,
        }];
        assert!(coarse.validate_parts().is_err());
    }

    /// Inputs that exercise the run-form join: the usual nodes, one with rows lacking
    /// identities, one with cell conflict flags, one whose groups change mid-row and one
    /// with write lanes on a lone row.
    fn run_form_inputs(series: Series) -> Vec<Matrix> {
        let mut inputs: Vec<Matrix> = (0..3).map(|n| node_matrix(series, n, 3, 40)).collect();
        let mut bare = node_matrix(series, 1, 3, 40);
        for r in bare.rows.iter_mut().step_by(3) {
            r.raft_group_ids.clear();
            r.leader_terms.clear();
        }
        let mut flagged = node_matrix(series, 2, 3, 40);
        for (i, r) in flagged
            .rows
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 5 == 0)
        {
            r.conflicts = (0..COLS).map(|c| (c + i) % 4 == 0).collect();
        }
        flagged.rows[1].conflict = true;
        let mut mixed = node_matrix(series, 0, 3, 40);
        for (i, r) in mixed.rows.iter_mut().enumerate() {
            for c in COLS / 2..COLS {
                r.raft_group_ids[c] = (i as u64 + c as u64) % 3 + 1;
            }
        }
        // A lone row's cell split over two terms (lanes add up to the cell).
        if let Some(r) = mixed.rows.iter_mut().find(|r| r.values[0] >= 2) {
            r.write_lanes = vec![
                CellLane {
                    column: 0,
                    group: 9,
                    term: 1,
                    value: r.values[0] - 1,
                },
                CellLane {
                    column: 0,
                    group: 9,
                    term: 2,
                    value: 1,
                },
            ];
        }
        inputs.extend([bare, flagged, mixed]);
        inputs
    }

    #[test]
    fn run_form_coarsening_equals_the_per_cell_coarsening_for_every_series_and_budget() {
        for series in Series::ALL {
            let inputs = run_form_inputs(series);
            let totals: Vec<Vec<RowTotal>> = inputs.iter().map(row_totals).collect();
            for budget in [1, 2, 5, 17, 40, 100] {
                let b = Boundaries::plan(totals.iter().map(Vec::as_slice), budget);
                for (n, m) in inputs.iter().enumerate() {
                    let cells = coarsen_onto(m.clone(), &b, 8);
                    let runs = coarsen_onto_runs(m.clone(), &b, 8);
                    let what = format!("{series}, budget {budget}, input {n}");
                    assert_eq!(runs, RunBoundaryMatrix::from_boundary(&cells), "{what}");
                    let mut expected = cells.clone();
                    for r in &mut expected.matrix.rows {
                        r.write_lanes.clear();
                    }
                    assert_eq!(runs.clone().into_boundary(), expected, "{what}");
                    assert_eq!(runs.column_totals(), column_totals(m), "{what}");
                    assert_eq!(runs.validate_parts(), Ok(()), "{what}");
                    assert_eq!(runs.len(), cells.matrix.rows.len(), "{what}");
                }
            }
        }
    }

    #[test]
    fn run_form_answers_fold_exactly_like_per_cell_ones_alone_and_in_batches() {
        for series in Series::ALL {
            let inputs = run_form_inputs(series);
            let totals: Vec<Vec<RowTotal>> = inputs.iter().map(row_totals).collect();
            for budget in [1, 4, 40] {
                let b = Boundaries::plan(totals.iter().map(Vec::as_slice), budget);
                let cells: Vec<BoundaryMatrix> = inputs
                    .iter()
                    .map(|m| coarsen_onto(m.clone(), &b, MAX_LISTED_ROUTE_IDS))
                    .collect();
                let runs: Vec<RunBoundaryMatrix> = inputs
                    .iter()
                    .map(|m| coarsen_onto_runs(m.clone(), &b, MAX_LISTED_ROUTE_IDS))
                    .collect();
                let new = || ClusterFold::new(series, 60_000, b.clone(), MAX_LISTED_ROUTE_IDS);
                let (mut plain, mut alone, mut batched) = (new(), new(), new());
                for (c, r) in cells.iter().zip(&runs) {
                    plain.add(c);
                    alone.add_runs(r);
                }
                // Run-form and per-cell answers mixed in one batch, as the local answer
                // leads the aggregator's first batch.
                for chunk in cells
                    .iter()
                    .zip(&runs)
                    .enumerate()
                    .collect::<Vec<_>>()
                    .chunks(3)
                {
                    let batch: Vec<FoldInput<'_>> = chunk
                        .iter()
                        .map(|(i, (c, r))| {
                            if i % 2 == 0 {
                                FoldInput::Runs(r)
                            } else {
                                FoldInput::Plain(c)
                            }
                        })
                        .collect();
                    batched.add_batch(&batch);
                }
                let (plain, alone, batched) = (plain.finish(), alone.finish(), batched.finish());
                assert_eq!(plain.matrix, alone.matrix, "{series} at budget {budget}");
                assert_eq!(
                    plain.warnings, alone.warnings,
                    "{series} at budget {budget}"
                );
                assert_eq!(plain.matrix, batched.matrix, "{series} at budget {budget}");
                assert_eq!(
                    plain.warnings, batched.warnings,
                    "{series} at budget {budget}"
                );
            }
        }
    }

    #[test]
    fn pushed_rows_keep_maximal_runs_that_never_cross_a_row() {
        let mut m = RunBoundaryMatrix::new(node_matrix(Series::Writes, 0, 3, 4));
        assert!(m.is_empty(), "the header's rows are dropped");
        let run = |len: u32, value: u64| IdentityRun { len, value };
        let meta = |id: u64| MatrixRow {
            bucket_id: format!("route:{id}"),
            values: vec![1; 3],
            raft_group_ids: vec![5; 3],
            write_lanes: vec![CellLane {
                column: 0,
                group: 1,
                term: 1,
                value: 1,
            }],
            ..MatrixRow::default()
        };
        // Zero-length runs go, equal neighbours join: what the per-cell array would give.
        m.push_row(
            meta(1),
            [1, 2, 3, 4, 5],
            &[run(2, 7), run(0, 9), run(3, 7)],
            &[run(1, 1), run(4, 2)],
            &[],
        );
        // The next row starts with the value the last one ended on: a run of its own.
        m.push_row(
            meta(2),
            [0; 5],
            &[run(5, 7)],
            &[],
            &[true, false, false, false, true],
        );
        m.push_cells_row(MatrixRow {
            values: vec![3, 0, 3, 0, 3],
            raft_group_ids: vec![7, 7, 8, 8, 8],
            leader_terms: vec![2; 5],
            ..meta(3)
        });
        assert_eq!(m.len(), 3);
        let r0 = m.row(0).unwrap_or_default();
        assert_eq!(r0.values, &[1, 2, 3, 4, 5]);
        assert_eq!(r0.groups, &[run(5, 7)]);
        assert_eq!(r0.terms, &[run(1, 1), run(4, 2)]);
        assert!(r0.conflicts.is_empty());
        let r1 = m.row(1).unwrap_or_default();
        assert_eq!(r1.groups, &[run(5, 7)]);
        assert!(r1.terms.is_empty(), "a row without identities has no runs");
        assert_eq!(r1.conflicts, &[true, false, false, false, true]);
        let r2 = m.row(2).unwrap_or_default();
        assert_eq!(r2.groups, &[run(2, 7), run(3, 8)]);
        assert_eq!(r2.terms, &[run(5, 2)]);
        assert_eq!(m.row(3), None);
        // Metadata only in the header: cell arrays and lanes are dropped.
        for (meta, _) in m.rows() {
            assert!(meta.values.is_empty() && meta.raft_group_ids.is_empty());
            assert!(meta.write_lanes.is_empty());
        }
        assert_eq!(m.values().len(), 15);
        assert_eq!(m.column_totals().len(), COLS);
        let cells = m.clone().into_boundary();
        assert_eq!(cells.matrix.rows[0].raft_group_ids, vec![7; 5]);
        assert_eq!(cells.matrix.rows[1].leader_terms, Vec::<u64>::new());
        assert_eq!(RunBoundaryMatrix::from_boundary(&cells), m);
        m.set_node_id(Some("n9".into()));
        assert_eq!(m.header().node_id.as_deref(), Some("n9"));
    }

    #[test]
    fn run_form_parts_that_do_not_add_up_or_are_unsorted_are_rejected() {
        let input = node_matrix(Series::Writes, 0, 3, 60);
        let b = Boundaries::plan([row_totals(&input).as_slice()], 3);
        let good = coarsen_onto_runs(input, &b, 256);
        assert!(
            !good.parts().is_empty(),
            "joined rows disagree on identities"
        );
        assert_eq!(good.validate_parts(), Ok(()));
        let mut off = good.clone();
        let mut parts = off.parts().to_vec();
        parts[0].value += 1;
        off.set_parts(parts);
        assert!(off.validate_parts().is_err());
        let mut unsorted = good.clone();
        let mut parts = unsorted.parts().to_vec();
        parts.reverse();
        unsorted.set_parts(parts);
        assert!(unsorted.validate_parts().is_err());
        let mut outside = good;
        let mut parts = outside.parts().to_vec();
        parts[0].row = 99;
        outside.set_parts(parts);
        assert!(outside.validate_parts().is_err());
    }
}
