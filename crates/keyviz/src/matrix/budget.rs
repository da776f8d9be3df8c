//! The row budget: coarsen adjacent rows, least active first.
//!
//! The reference keeps the top-N rows and silently drops the rest, so totals
//! shrink and cold ranges vanish. Here rows are merged with their neighbour in
//! key order instead — always the adjacent pair with the smallest combined
//! activity — until the budget fits. Every count survives; hot rows stay
//! individual because they are merged last.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

use super::wire::MatrixRow;
use crate::bucket::{max_end, parse_route_bucket_id, virtual_bucket_name};

/// Splits `totals.len()` rows (in key order) into at most `budget` contiguous
/// groups by repeatedly joining the adjacent pair with the smallest combined
/// total; ties go to the leftmost pair so the plan is deterministic.
///
/// A budget of 0 is treated as 1. O(n log n).
#[must_use = "pure function"]
pub fn plan_groups(totals: &[u64], budget: usize) -> Vec<Range<usize>> {
    let n = totals.len();
    let budget = budget.max(1);
    if n <= budget {
        return (0..n).map(|i| i..i + 1).collect();
    }
    // Groups are named by their first row; `end[g]` is one past their last row.
    let mut end: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
    let mut total: Vec<u64> = totals.to_vec();
    let mut alive = vec![true; n];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = (0..n - 1)
        .map(|i| Reverse((total[i].saturating_add(total[i + 1]), i)))
        .collect();
    let mut groups = n;
    while groups > budget {
        let Some(Reverse((sum, left))) = heap.pop() else {
            break;
        };
        if !alive[left] || end[left] >= n {
            continue;
        }
        let right = end[left];
        if sum != total[left].saturating_add(total[right]) {
            continue; // stale: one side grew since this entry was pushed
        }
        // Join `right` into `left`.
        alive[right] = false;
        end[left] = end[right];
        total[left] = total[left].saturating_add(total[right]);
        if end[left] < n {
            prev[end[left]] = Some(left);
            heap.push(Reverse((
                total[left].saturating_add(total[end[left]]),
                left,
            )));
        }
        if let Some(p) = prev[left] {
            heap.push(Reverse((total[p].saturating_add(total[left]), p)));
        }
        groups -= 1;
    }
    let mut out = Vec::with_capacity(groups);
    let mut g = 0;
    while g < n {
        out.push(g..end[g]);
        g = end[g];
    }
    out
}

/// Applies the row budget to rows already in key order (start, then end, as
/// the local query and the merge emit them; overlapping incarnations of one
/// range are neighbours, and a joined row spans the union of its members,
/// `[first start, latest end)`): rows in one
/// planned group become a single aggregate row (values summed per column,
/// conflicts OR-ed, identity kept only where the members agree). Totals per
/// column are preserved exactly (saturating at `u64::MAX`).
///
/// `max_route_ids` caps the member list of an aggregate; the rest is counted in
/// `route_count` and flagged with `route_ids_truncated`.
#[must_use = "returns the coarsened rows"]
pub fn coarsen_rows(rows: Vec<MatrixRow>, budget: usize, max_route_ids: usize) -> Vec<MatrixRow> {
    if rows.len() <= budget.max(1) {
        return rows;
    }
    let totals: Vec<u64> = rows.iter().map(MatrixRow::total).collect();
    let plan = plan_groups(&totals, budget);
    let mut rows: Vec<Option<MatrixRow>> = rows.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(plan.len());
    for group in plan {
        if group.len() == 1 {
            if let Some(row) = rows[group.start].take() {
                out.push(row);
            }
            continue;
        }
        let members: Vec<MatrixRow> = group.filter_map(|i| rows[i].take()).collect();
        out.push(join_rows(members, max_route_ids));
    }
    // A joined row is named by its range; when diverging catalogs make that
    // name collide with a kept row, suffix it so bucket ids stay unique.
    unique_bucket_ids(&mut out);
    out
}

/// Makes bucket ids unique in place: a repeated id gets `~1`, `~2`, ... (the
/// first occurrence keeps its id). O(n) expected.
pub(crate) fn unique_bucket_ids(rows: &mut [MatrixRow]) {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    for row in rows.iter_mut() {
        if !seen.insert(row.bucket_id.clone()) {
            let mut n = 1;
            while !seen.insert(format!("{}~{n}", row.bucket_id)) {
                n += 1;
            }
            row.bucket_id = format!("{}~{n}", row.bucket_id);
        }
    }
}

/// Joins adjacent rows (in key order) into one aggregate row.
pub(crate) fn join_rows(members: Vec<MatrixRow>, max_route_ids: usize) -> MatrixRow {
    let mut row = join_meta(&members, max_route_ids);
    let width = members.iter().map(|r| r.values.len()).max().unwrap_or(0);
    let mut values = vec![0u64; width];
    let mut groups = vec![0u64; width];
    let mut terms = vec![0u64; width];
    // Identity per column is kept only while every non-zero member agrees.
    let mut identity_known = vec![true; width];
    let mut seen_nonzero = vec![false; width];
    let mut conflicts = vec![false; width];
    for m in &members {
        for j in 0..width {
            let v = m.values.get(j).copied().unwrap_or(0);
            values[j] = values[j].saturating_add(v);
            if m.conflicts.get(j).copied().unwrap_or(false) {
                conflicts[j] = true;
            }
            if v == 0 {
                continue;
            }
            let g = m.raft_group_ids.get(j).copied().unwrap_or(0);
            let t = m.leader_terms.get(j).copied().unwrap_or(0);
            if !seen_nonzero[j] {
                seen_nonzero[j] = true;
                groups[j] = g;
                terms[j] = t;
            } else if groups[j] != g || terms[j] != t {
                identity_known[j] = false;
            }
        }
    }
    for j in 0..width {
        if !identity_known[j] {
            groups[j] = 0;
            terms[j] = 0;
        }
    }
    let any_cell_conflict = conflicts.iter().any(|c| *c);
    row.conflict |= any_cell_conflict;
    row.values = values;
    if any_cell_conflict {
        row.conflicts = conflicts;
    }
    row.raft_group_ids = groups;
    row.leader_terms = terms;
    row
}

/// The metadata half of [`join_rows`]: the aggregate row of `members` (in key order) with
/// every cell array empty, `conflict` set when a member's row flag is (a cell flag within
/// the joined width also sets it: the caller's, as it reads the cells). Shared by the
/// per-cell join and the run-form join of `boundaries`, so both name and count a joined
/// row the same way.
pub(crate) fn join_meta(members: &[MatrixRow], max_route_ids: usize) -> MatrixRow {
    // Members are in key order (start, then end), so the first starts first;
    // with overlapping incarnations the last need not end last.
    let start = members.first().and_then(|r| r.start.clone());
    let end = members
        .iter()
        .map(|r| r.end.as_deref())
        .reduce(max_end)
        .flatten()
        .map(<[u8]>::to_vec);
    let mut any_conflict = false;
    let mut route_ids: Vec<u64> = Vec::new();
    // Sub-range rows of one route (`route:1#0`, `route:1#1`) are one route:
    // plain rows count by distinct id, aggregates by their exact member count.
    let mut plain_ids: Vec<u64> = Vec::new();
    let mut other_count = 0u64;
    let mut truncated = false;
    for m in members {
        truncated |= m.route_ids_truncated;
        let plain_id = (!m.aggregate)
            .then(|| parse_route_bucket_id(&m.bucket_id))
            .flatten()
            .map(|(route, _)| route);
        match plain_id {
            Some(id) => plain_ids.push(id),
            None => {
                other_count = other_count.saturating_add(m.route_count.max(1));
                route_ids.extend_from_slice(&m.route_ids);
            }
        }
        any_conflict |= m.conflict;
    }
    plain_ids.sort_unstable();
    plain_ids.dedup();
    let route_count = other_count.saturating_add(plain_ids.len() as u64);
    route_ids.extend_from_slice(&plain_ids);
    route_ids.sort_unstable();
    route_ids.dedup();
    if route_ids.len() > max_route_ids {
        route_ids.truncate(max_route_ids);
        truncated = true;
    }
    let route_count = route_count.max(route_ids.len() as u64);
    truncated |= route_count > route_ids.len() as u64;
    MatrixRow {
        bucket_id: virtual_bucket_name(start.as_deref().unwrap_or(&[]), end.as_deref()),
        label: None,
        preview: members.first().and_then(|r| r.preview.clone()),
        first_key: members.iter().filter_map(|r| r.first_key.clone()).min(),
        last_key: members.iter().filter_map(|r| r.last_key.clone()).max(),
        start,
        end,
        aggregate: true,
        route_ids,
        route_ids_truncated: truncated,
        route_count,
        conflict: any_conflict,
        // Joined rows mix identities; the budget runs after any merge.
        ..MatrixRow::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, start: &str, end: &str, values: Vec<u64>) -> MatrixRow {
        MatrixRow {
            bucket_id: format!("route:{id}"),
            start: Some(start.as_bytes().to_vec()),
            end: Some(end.as_bytes().to_vec()),
            route_count: 1,
            raft_group_ids: vec![7; values.len()],
            leader_terms: vec![42; values.len()],
            values,
            ..MatrixRow::default()
        }
    }

    #[test]
    fn plan_merges_least_active_adjacent_pairs_first() {
        // rows: 1, 100, 5, 50 -> budget 2: join (5,50)? no: pairs are 101, 105, 55;
        // smallest is (5,50)=55 -> [1,100,55]; then pairs 101, 155 -> [101, 55].
        let plan = plan_groups(&[1, 100, 5, 50], 2);
        assert_eq!(plan, vec![0..2, 2..4]);
    }

    #[test]
    fn plan_keeps_everything_when_under_budget_and_treats_zero_as_one() {
        assert_eq!(plan_groups(&[3, 4], 5), vec![0..1, 1..2]);
        assert_eq!(plan_groups(&[3, 4, 5], 0), vec![0..3]);
        assert!(plan_groups(&[], 3).is_empty());
    }

    #[test]
    fn row_budget_conserves_totals_per_column() {
        let rows: Vec<MatrixRow> = (0..10u64)
            .map(|i| {
                let s = format!("k{i:02}");
                let e = format!("k{:02}", i + 1);
                row(i, &s, &e, vec![i, i * 2, 1])
            })
            .collect();
        let before: Vec<u64> = (0..3)
            .map(|j| rows.iter().map(|r| r.values[j]).sum())
            .collect();
        let out = coarsen_rows(rows, 3, 256);
        assert_eq!(out.len(), 3);
        let after: Vec<u64> = (0..3)
            .map(|j| out.iter().map(|r| r.values[j]).sum())
            .collect();
        assert_eq!(before, after);
        // Adjacent and tiling: each row starts where the previous ended.
        for w in out.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        let members: u64 = out.iter().map(|r| r.route_count).sum();
        assert_eq!(members, 10);
    }

    #[test]
    fn joined_row_keeps_identity_only_where_members_agree() {
        let mut a = row(1, "a", "b", vec![5, 0]);
        let b = row(2, "b", "c", vec![3, 4]);
        a.leader_terms = vec![41, 41];
        let j = join_rows(vec![a, b], 256);
        assert_eq!(j.values, vec![8, 4]);
        assert_eq!(j.leader_terms, vec![0, 42]);
        assert_eq!(j.raft_group_ids, vec![0, 7]);
        assert_eq!(j.route_ids, vec![1, 2]);
        assert!(j.aggregate);
        assert!(j.bucket_id.starts_with("virtual:"));
    }
}
